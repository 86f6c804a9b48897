"""The ``mnist-lab`` command line: train, models, data, bench, batch. Every argparse parser lives here.

Bad input (an unknown model, an impossible number, missing data, an output path that cannot or
must not be written) prints one clear message and exits with status 2; a run that diverges exits
with 1; Ctrl-C exits with 130 and SIGTERM with 143, after saving what the run has. SIGTERM is
raised as an interrupt (`errors.Terminated`) so that the same clean-up runs: no half-written file,
no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .checkpoints import check_checkpoint_target
from .config import NORMALIZATIONS, OPTIMIZERS, SCHEDULES, TrainConfig
from .data import check_files, find_files, locate, search_dirs
from .devices import DEVICES, get_device, set_seed
from .errors import InvalidParameterError, MnistLabError, Terminated, check_positive_int, out_of_memory
from .files import check_outputs, check_writable, figure_format, save_figure, write_json
from .models import build_model, model_class, model_table
from .train import fit

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143

# Help for every TrainConfig field; `mnist-lab train` has one option per field (a test checks it).
TRAIN_HELP = {
    "epochs": "passes over the training set",
    "lr": "learning rate (the peak rate with --schedule onecycle)",
    "optimizer": f"one of {', '.join(OPTIMIZERS)}",
    "momentum": "SGD momentum in [0, 1)",
    "weight_decay": "L2 penalty added by the optimiser",
    "batch_size": "training batch size",
    "test_batch_size": "evaluation batch size (speed only, never the result)",
    "normalize": f"pixel normalisation: {', '.join(NORMALIZATIONS)}",
    "shuffle": "reshuffle the training set every epoch",
    "seed": "random seed (weights, dropout, shuffling)",
    "limit": "train on the first N training samples only",
    "test_limit": "evaluate on the first N test samples only",
    "label_smoothing": "training targets: 1 - s on the true class, s spread over all 10",
    "schedule": f"learning-rate schedule: {', '.join(SCHEDULES)}",
    "nesterov": "Nesterov momentum (SGD with momentum > 0)",
    "drop_last": "drop the last, smaller training batch of each epoch",
    "validation": "hold out the last N training images (never trained on), evaluated every epoch",
}
SPEED_SWITCHES = ("amp", "channels_last", "cuda_graph", "fused", "pool_first")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model (defaults: its tutorial's recipe)",
        description="Train one model on MNIST. Every option left out takes the value of the model's "
        "tutorial recipe (see `mnist-lab models`); the speed switches left out are the ones "
        "measured to pay on this machine (mnist_lab.speed.Speed.auto, cached), as in the notebooks.",
    )
    p.add_argument("--model", required=True, help="model name (see `mnist-lab models`)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=TRAIN_HELP[field.name])
        else:  # limit and test_limit default to None: whole numbers
            kind = int if field.default is None else type(field.default)
            p.add_argument(flag, type=kind, help=TRAIN_HELP[field.name])
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} (or cuda:N)")
    p.add_argument("--data-dir", help="folder holding the MNIST files (default: $MNIST_LAB_DATA, then data/)")
    p.add_argument("--json", metavar="PATH", help="write the history as JSON here")
    p.add_argument("--plot", metavar="PATH", help="save the training curves here (PNG, PDF, SVG)")
    p.add_argument("--checkpoint", metavar="PATH", help="save weights after every epoch here")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--overwrite", action="store_true", help="replace what is at --checkpoint/--json/--plot even if "
                   "it is not this model's checkpoint (another model's, a link, a write-protected file)")  # fmt: skip
    for name in SPEED_SWITCHES:
        p.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                       help=f"speed switch {name} (default: what Speed.auto measured to pay here)")  # fmt: skip
    p.add_argument("--compile", nargs="?", const=True, metavar="MODE", help="torch.compile the model (optional mode)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for the training steps (default: what Speed.auto measured here)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from .plots import plot_curves
    from .speed import Speed

    cls = model_class(args.model)
    names = [field.name for field in dataclasses.fields(TrainConfig)]
    config = cls.RECIPE.replace(**{k: getattr(args, k) for k in names if getattr(args, k) is not None})
    device = get_device(args.device)
    set_seed(config.seed)
    net = build_model(args.model, seed=config.seed)
    _check_train_outputs(args, net)
    speed = _speed(args, lambda: Speed.auto(net, device, config, args.data_dir))
    print(f"Training {args.model} ({cls.SOURCE}) with {config}; speed: {speed.describe()}")
    history = fit(
        net, config, device=device, data_dir=args.data_dir, speed=speed, checkpoint=args.checkpoint,
        resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
    )  # fmt: skip
    if args.json:
        print(f"History written to {write_json(args.json, history.to_dict(), overwrite=args.overwrite)}")
    if args.plot and history.epochs:
        print(f"Curves saved to {save_figure(plot_curves(history), args.plot, overwrite=args.overwrite)}")
    if history.stopped == "diverged":
        return EXIT_DIVERGED
    if history.stopped == "interrupted":
        return EXIT_TERMINATED if _terminated else EXIT_INTERRUPTED
    print(f"Final test accuracy of {args.model}: {history.final_test_acc:.2%} on {history.device}")
    return 0


def _check_train_outputs(args: argparse.Namespace, net) -> None:
    """Every output path checked before any data is loaded: writable, a file, not an input, not another output."""
    if args.json:
        check_writable(args.json, overwrite=args.overwrite)
    if args.plot:
        figure_format(args.plot)  # a suffix matplotlib can write
        check_writable(args.plot, overwrite=args.overwrite)
    inputs = {f"the MNIST data file {name}": path for name, path in find_files(args.data_dir).items()}
    check_outputs({"--json": args.json, "--plot": args.plot, "--checkpoint": args.checkpoint}, inputs)
    if args.checkpoint:
        check_writable(args.checkpoint, overwrite=args.overwrite)
    check_checkpoint_target(args.checkpoint, net, args.resume, args.overwrite, log=None)


def _speed(args: argparse.Namespace, auto):
    """`auto()` with the switches named on the command line; an explicit --compile replaces the CUDA graph.

    The switches given are checked first, so a bad --compile mode fails before `auto` measures anything.
    """
    from .speed import Speed

    given = {name: getattr(args, name) for name in SPEED_SWITCHES if getattr(args, name) is not None}
    if args.compile is not None:
        given["compile"] = args.compile
        given.setdefault("cuda_graph", False)
    if args.threads is not None:
        given["threads"] = args.threads
    Speed(**given)
    return dataclasses.replace(auto(), **given)


def _models(args: argparse.Namespace) -> int:
    # "claim": the test accuracy the tutorial itself states ("-" where it states none);
    # "target": our own bar for the recipe's last epoch. Measured results: README, notebooks.
    print(f"{'name':<20}{'source':<38}{'parameters':>12}  {'claim':>7}  {'target':>7}  recipe")
    for row in model_table():
        claim, target = (f"{row[key]:.2%}" if row[key] is not None else "-" for key in ("tutorial_claim", "target"))
        print(f"{row['name']:<20}{row['source']:<38}{row['parameters']:>12,}  {claim:>7}  {target:>7}  {row['recipe']}")
    print("claim: the tutorial's own number (- where it states none); target: ours, not the tutorial's")
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
        print(f"{'OK ' if status.ok else 'BAD'} {status.name:<26} {status.path or '-'}")
        if status.problem and status.problem != "missing":
            print(f"    {status.problem}")
    if not ok:
        print(
            "Some files are missing or do not verify. With internet: `mnist-lab data --download`. "
            "Offline: set MNIST_LAB_DATA to a folder holding the four files (raw or .gz).",
            file=sys.stderr,
        )
    return 0 if ok else EXIT_USAGE


BENCH_QUICK = {"models": ["mlp", "convnet"], "limit": 1024, "test_limit": 500, "repeats": 1, "accuracy_epochs": 2}
FAST_QUICK = {"seeds": 1, "limit": 4096, "test_limit": 1000}


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time the tutorials' training loop against mnist_lab's (or run the fast recipe)",
        description="Time an epoch of the tutorials' training loop and of mnist_lab's fit for each model, "
        "on one device, in one run (warm-up epoch, then the median of --repeats epochs), and compare "
        "their test accuracies after --accuracy-epochs. With --fast, train the fast recipe over --seeds "
        "seeds instead. Writes JSON and Markdown into --out.",
    )
    p.add_argument("--models", nargs="+", metavar="NAME", help="models (default: the five tutorial rows; "
                   "plus alexnet on a GPU)")  # fmt: skip
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)} (or cuda:N)")
    p.add_argument("--repeats", type=int, help="timed epochs per side after the warm-up epoch (default 3)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: each model's recipe)")
    p.add_argument("--limit", type=int, help="train on the first N training images only")
    p.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    p.add_argument("--accuracy-epochs", type=int, help="report test accuracy after this many epochs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling (default 0)")
    p.add_argument("--fast", action="store_true", help="run the fast recipe over --seeds seeds instead")
    p.add_argument("--seeds", type=int, help="with --fast: how many seeds, from --seed on (default 10)")
    p.add_argument("--epochs", type=int, help="with --fast: epochs of the fast recipe (default: its recipe's)")
    p.add_argument("--compile", help="with --fast: torch.compile mode, or 'off' (default: Speed.auto)")
    p.add_argument("--quick", action="store_true", help="a tiny run for CI (2 models or 1 seed, few images)")
    p.add_argument("--data-dir", help="folder holding the MNIST files (default: $MNIST_LAB_DATA, then data/)")
    p.add_argument("--out", default="results/bench", metavar="DIR", help="where to write the report")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from .speed import bench

    if args.quick:  # fill in what was not given
        for key, value in (FAST_QUICK if args.fast else BENCH_QUICK).items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    check_writable(Path(args.out) / "bench.json")
    report = _fast_report(args, bench) if args.fast else _bench_report(args, bench)
    report["command"] = args.command_line
    json_path, md_path = bench.write_report(report, args.out)
    print(f"Report written to {json_path} and {md_path}")
    return 0


def _bench_report(args: argparse.Namespace, bench) -> dict:
    if any(v is not None for v in (args.seeds, args.compile, args.epochs)):
        raise InvalidParameterError("--seeds, --epochs and --compile belong to --fast; add --fast or leave them out.")
    given = {name: getattr(args, name) for name in ("device", "batch_size", "limit", "test_limit", "seed", "data_dir")}
    return bench.run_bench(
        bench.BenchSettings(
            models=bench.model_list(args.models) or bench.default_models(get_device(args.device)),
            repeats=3 if args.repeats is None else args.repeats,
            accuracy_epochs=4 if args.accuracy_epochs is None else args.accuracy_epochs,
            **given,
        )
    )


def _fast_report(args: argparse.Namespace, bench) -> dict:
    from .models import FastCNN
    from .speed import Speed

    ignored = [flag for flag, v in (("--models", args.models), ("--repeats", args.repeats)) if v]
    ignored += ["--accuracy-epochs"] if args.accuracy_epochs is not None else []
    if ignored:
        raise InvalidParameterError(f"{', '.join(ignored)} do not apply to --fast (it trains FastCNN over --seeds).")
    seeds = check_positive_int("seeds", 10 if args.seeds is None else args.seeds)
    changes = {"batch_size": args.batch_size, "limit": args.limit, "test_limit": args.test_limit}
    changes["epochs"] = 1 if args.epochs is None and args.quick else args.epochs
    config = FastCNN.RECIPE.replace(seed=args.seed, **{k: v for k, v in changes.items() if v is not None})
    speed = None
    if args.compile is not None:
        mode = False if args.compile == "off" else args.compile
        Speed(compile=mode)  # a bad mode fails here, before Speed.auto measures anything
        auto = Speed.auto(FastCNN(), get_device(args.device), config, args.data_dir)
        speed = dataclasses.replace(auto, cuda_graph=False, compile=mode)
    return bench.run_fast(range(args.seed, args.seed + seeds), args.device, config, args.data_dir, speed)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mnist-lab``."""
    parser = argparse.ArgumentParser(
        prog="mnist-lab", description="Handwritten-digit recognition on MNIST with PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"mnist-lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_bench(sub)
    add_batch_command(sub)
    sub.add_parser("models", help="list every model with its source and parameter count").set_defaults(func=_models)
    data = sub.add_parser("data", help="show where MNIST is and whether every file verifies")
    data.add_argument("--data-dir", help="folder to check (default: $MNIST_LAB_DATA, then data/)")
    data.add_argument("--download", action="store_true", help="download MNIST if it is missing (needs internet)")
    data.set_defaults(func=_data)
    return parser


_terminated = False  # whether SIGTERM arrived: it stops a run like Ctrl-C, but the exit status differs


def _on_sigterm(signum, frame) -> None:
    global _terminated
    _terminated = True
    raise Terminated("SIGTERM")


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run ``args.func(args)``; a `MnistLabError` or a failed memory allocation prints one paragraph and
    returns `EXIT_USAGE`; Ctrl-C or SIGTERM outside training returns 130 or 143. Never a traceback."""
    try:
        return args.func(args)
    except MnistLabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # re-raised as a plain one where fit caught it (the bench): see _terminated
        terminated = isinstance(exc, Terminated) or _terminated
        name = "SIGTERM" if terminated else "Ctrl-C"
        print(f"{prog}: stopped by {name} before the command finished.", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        advice = out_of_memory(exc)
        if advice is None:
            raise
        print(f"{prog}: error: {advice}", file=sys.stderr)
        return EXIT_USAGE


def _batch(args: argparse.Namespace) -> int:
    from .batch import run_batch  # Dask and papermill load only for this command

    same = {name: getattr(args, name) for name in ("out", "jobs", "force", "timeout", "scheduler", "recipes")}
    params = [tuple(pair) for pair in args.param or []]
    return run_batch(args.notebooks or None, params, args.file, grid=args.grid or [], **same)


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
    p.add_argument("--recipes", default="full", choices=("full", "laptop", "auto"),
                   help="full: every tutorial's recipe (default); laptop: notebooks/laptop.yaml, CPU-sized; "
                   "auto: full with a CUDA GPU, else laptop (what `make run` uses)")  # fmt: skip
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
    """Run the command line; returns the exit status. SIGTERM becomes an interrupt while it runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["mnist-lab", *argv])
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return run_command(args, "mnist-lab")
    global _terminated
    _terminated = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run_command(args, "mnist-lab")
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
