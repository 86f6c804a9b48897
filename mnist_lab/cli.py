"""The ``mnist-lab`` command line: train, models, data.

Every option has ``--help``. Bad input (an unknown model, an impossible number,
missing data) prints one clear message and exits with status 2; a run that
diverges exits with 1; an interrupted run exits with 130 after saving what it has.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .bench import add_bench_command
from .config import OPTIMIZERS
from .data import NORMALIZATIONS, check_files, locate, search_dirs
from .errors import EXIT_USAGE, run_command
from .io import check_writable, save_figure
from .models import build_model, model_class, model_table
from .train import DEVICES, fit, set_seed

EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 130


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model (defaults: its tutorial's recipe)",
        description="Train one model on MNIST. Every option left out takes the value of the "
        "model's tutorial recipe (see `mnist-lab models`).",
    )
    p.add_argument("--model", required=True, help="model name (see `mnist-lab models`)")
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--momentum", type=float, help="SGD momentum in [0, 1)")
    p.add_argument("--weight-decay", type=float, help="L2 penalty")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--test-batch-size", type=int, help="evaluation batch size (speed only)")
    p.add_argument("--normalize", help=f"pixel normalisation: {', '.join(NORMALIZATIONS)}")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None, help="reshuffle every epoch")
    p.add_argument("--seed", type=int, help="random seed (weights, dropout, shuffling)")
    p.add_argument("--limit", type=int, help="train on the first N training samples only")
    p.add_argument("--test-limit", type=int, help="evaluate on the first N test samples only")
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} (or cuda:N)")
    p.add_argument("--data-dir", help="folder holding the MNIST files (default: $MNIST_LAB_DATA, then data/)")
    p.add_argument("--json", metavar="PATH", help="write the history as JSON here")
    p.add_argument("--plot", metavar="PATH", help="save T0's four training curves here (PNG, PDF, SVG)")
    p.add_argument("--checkpoint", metavar="PATH", help="save weights after every epoch here")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (fast on recent GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    cls = model_class(args.model)
    keys = (
        "epochs",
        "lr",
        "optimizer",
        "momentum",
        "weight_decay",
        "batch_size",
        "test_batch_size",
        "normalize",
        "shuffle",
        "seed",
        "limit",
        "test_limit",
    )
    config = cls.RECIPE.replace(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    for path in (args.json, args.plot, args.checkpoint):
        if path:
            check_writable(path)
    set_seed(config.seed)
    net = build_model(args.model, seed=config.seed)
    print(f"Training {args.model} ({cls.SOURCE}) with {config}")
    history = fit(
        net,
        config,
        device=args.device,
        data_dir=args.data_dir,
        checkpoint=args.checkpoint,
        resume=args.resume,
        progress=not args.no_progress,
        amp=args.amp,
        compile=args.compile,
    )
    if args.json:
        print(f"History written to {history.save_json(args.json)}")
    if args.plot and history.epochs:
        from .plots import plot_curves

        print(f"Curves saved to {save_figure(plot_curves(history), args.plot)}")
    if history.stopped == "diverged":
        return EXIT_DIVERGED
    if history.stopped == "interrupted":
        return EXIT_INTERRUPTED
    print(f"Final test accuracy of {args.model}: {history.final_test_acc:.2%} on {history.device}")
    return 0


def _models(args: argparse.Namespace) -> int:
    rows = model_table()
    print(f"{'name':<20}{'source':<38}{'parameters':>12}  {'claimed':>8}  recipe")
    for row in rows:
        claimed = f"{row['expected_accuracy']:.2%}" if row["expected_accuracy"] else "-"
        print(f"{row['name']:<20}{row['source']:<38}{row['parameters']:>12,}  {claimed:>8}  {row['recipe']}")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.download:
        locate(args.data_dir, download=True)
    print("Searched, in order:")
    for folder in search_dirs(args.data_dir):
        print(f"  {folder}")
    ok = True
    for status in check_files(args.data_dir):
        ok &= status.ok
        where = status.path or "-"
        print(f"{'OK ' if status.ok else 'BAD'} {status.name:<26} {where}")
        if status.problem and status.problem != "missing":
            print(f"    {status.problem}")
    if not ok:
        print(
            "Some files are missing or do not verify. With internet: `mnist-lab data --download`. "
            "Offline: set MNIST_LAB_DATA to a folder holding the four files (raw or .gz).",
            file=sys.stderr,
        )
    return 0 if ok else EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mnist-lab`` (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(
        prog="mnist-lab", description="Handwritten-digit recognition on MNIST with PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"mnist-lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    add_bench_command(sub)
    add_batch_command(sub)
    sub.add_parser("models", help="list every model with its source and parameter count").set_defaults(func=_models)
    data = sub.add_parser("data", help="show where MNIST is and whether every file verifies")
    data.add_argument("--data-dir", help="folder to check (default: $MNIST_LAB_DATA, then data/)")
    data.add_argument("--download", action="store_true", help="download MNIST if it is missing (needs internet)")
    data.set_defaults(func=_data)
    return parser


def _batch(args: argparse.Namespace) -> int:
    from .batch import run_batch  # Dask and papermill load only for this command

    return run_batch(
        notebooks=args.notebooks or None,
        params=[tuple(pair) for pair in args.param or []],
        params_file=args.file,
        out=args.out,
        jobs=args.jobs,
        force=args.force,
        timeout=args.timeout,
        grid=args.grid or [],
        scheduler=args.scheduler,
    )


def add_batch_command(sub: argparse._SubParsersAction) -> None:
    """Register ``mnist-lab batch`` (see `mnist_lab.batch`)."""
    p = sub.add_parser(
        "batch",
        help="run notebooks with papermill on Dask, sweep their parameters, summarise their results",
        description="Run notebooks (default: every notebooks/[0-9]*.ipynb, in order) with papermill, on a local "
        "Dask cluster or an existing one; working directory = the repository root. Writes DIR/<run>.ipynb "
        "(executed copy), DIR/<run>/ (the notebook's output_dir: metrics.json, figures) and DIR/summary.md + "
        "summary.csv; a sweep adds DIR/sweep.csv and DIR/<notebook>/sweep.png. Runs already done with the same "
        "parameters are skipped unless --force.",
        epilog="-f FILE: a YAML mapping; a parameter name applies to every notebook that declares it, a notebook "
        "stem (e.g. 03_mlp) maps to that notebook's own parameters. -p beats -f. --grid seed=0..9 --grid "
        "lr=0.05,0.1 runs every combination; runs are named DIR/<notebook>/lr=0.05,seed=0. A name no chosen "
        "notebook declares is an error before anything runs.",
    )
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="notebooks to run (default: the whole series)")
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter (VALUE read as YAML: 3 is an int, null is None); repeatable",
    )
    p.add_argument("-f", "--file", metavar="FILE", help="YAML file of parameters (common and/or per notebook)")
    p.add_argument(
        "--grid",
        action="append",
        metavar="NAME=V1,V2",
        help="sweep a parameter over values read like -p, or a range NAME=A..B of whole numbers; repeatable, "
        "every combination runs",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for executed copies, results and summary")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=int, default=1, metavar="N", help="local Dask worker processes (default 1)")
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786"
    )
    p.add_argument("--force", action="store_true", help="rerun runs already done with the same parameters")
    p.add_argument("--timeout", type=int, metavar="SECONDS", help="fail a run whose cell runs longer than this")
    p.set_defaults(func=_batch)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    return run_command(build_parser().parse_args(argv), "mnist-lab")


if __name__ == "__main__":
    sys.exit(main())
