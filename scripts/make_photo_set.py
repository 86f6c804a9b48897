"""Measure how well your own digits are read from realistic phone photos, per condition.

Real handwritten digits (held-out MNIST test digits, upscaled into ink strokes, and
digits drawn from pen strokes) are turned into photos under each condition of
`mnist_lab.handwriting.photos` (desk, shadow, ruled and squared paper, noise and
JPEG, low contrast, rotation and perspective, plus conditions held out from
tuning) and read by a model trained with the package's own recipe. Run from the
repository root:

    python scripts/make_photo_set.py                     # the table: eval split, all conditions
    python scripts/make_photo_set.py --split tune        # what the pipeline was tuned on
    python scripts/make_photo_set.py --samples           # (re)write the harder shipped samples

The model (``--model``, default cnn5x5, trained for ``--epochs`` on all 60,000
training digits) is cached in results/handwriting/ (git-ignored). ``--save`` writes
the measurement, with the command, device, date and load average, to
mnist_lab/samples/photo_set.json, which notebook 07 and the README quote.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from mnist_lab import build_model, fit, load_checkpoint
from mnist_lab.data import load_mnist
from mnist_lab.handwriting.photos import (
    CONDITIONS,
    HELD_OUT,
    MEASUREMENT,
    TUNED,
    digit_coverage,
    evaluate_photos,
    make_photo,
    table_markdown,
)

# The harder shipped samples: (MNIST test index, condition, seed); all from the eval split's range.
SAMPLES = [
    (5001, "desk", 11),
    (5002, "shadow", 12),
    (5004, "ruled", 13),
    (5006, "squared", 14),
    (5008, "low_contrast", 15),
]


def trained_model(name: str, epochs: int, cache: Path) -> torch.nn.Module:
    """`name` trained by its recipe for `epochs` on the CPU, from the cache when it is complete."""
    model = build_model(name, seed=0)
    path = cache / f"{name}_{epochs}epochs.pt"
    if path.exists():
        state = load_checkpoint(path, model)
        if len(state.get("history", {}).get("test_acc", [])) >= epochs:
            return model.eval()
    fit(model, device="cpu", epochs=epochs, checkpoint=path, resume=path.exists(), progress=False)
    return model.eval()


def _measure_one(job: tuple) -> dict:
    """One condition, in a worker process: (model name, epochs, cache, condition, n, split) -> its row."""
    name, epochs, cache, condition, n, split = job
    torch.set_num_threads(1)
    model = trained_model(name, epochs, cache)
    return evaluate_photos(model, [condition], n=n, split=split, progress=print)


def measure(args: argparse.Namespace, conditions: list[str]) -> dict:
    """The table, one condition per worker process (`--jobs`); rows in the order of `conditions`."""
    trained_model(args.model, args.epochs, args.cache)  # train (once) before the workers load it
    jobs = [(args.model, args.epochs, args.cache, c, args.n, args.split) for c in conditions]
    if args.jobs == 1:
        rows = [_measure_one(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            rows = pool.map(_measure_one, jobs, chunksize=1)
    return {c: row[c] for c, row in zip(conditions, rows)}


def write_samples(out: Path) -> None:
    """A few harder samples (photos made by `make_photo`) next to the clean ones."""
    images, labels = load_mnist("test")
    mnist = (images.numpy(), labels.numpy())
    for index, condition, seed in SAMPLES:
        coverage, label = digit_coverage("mnist", index, mnist, seed)
        path = out / f"photo_{label}_{condition}.jpg"
        make_photo(coverage, condition, seed).save(path, format="JPEG", quality=90)  # a photo, as a phone saves it
        print(f"{path}: {condition}")


def main() -> None:
    """Parse the options, then measure (and with --save, record) or write the samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["tune", "eval"], default="eval")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=None)
    parser.add_argument("-n", type=int, default=150, help="photos per condition")
    parser.add_argument("--model", default="cnn5x5")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("results/handwriting"))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one condition each at a time)")
    parser.add_argument("--save", action="store_true", help=f"record the measurement in {MEASUREMENT.name}")
    parser.add_argument("--samples", action="store_true", help="write the harder samples instead")
    args = parser.parse_args()
    if args.samples:
        write_samples(MEASUREMENT.parent)
        return
    conditions = args.conditions or (list(TUNED) if args.split == "tune" else list(CONDITIONS))
    if args.split == "tune" and set(conditions) & set(HELD_OUT):
        parser.error("held-out conditions are measured on the eval split only")
    table = measure(args, conditions)
    markdown = table_markdown(table)
    print(markdown)
    rates = [r["confidently_wrong"] for r in table.values()]
    print(f"confidently wrong overall: {np.mean(rates):.1%}")
    if args.save:
        record = {
            "command": "python scripts/make_photo_set.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "device": f"CPU, {os.cpu_count()} cores ({platform.machine()}), torch {torch.__version__}",
            "load_average": os.getloadavg()[0],  # the machine is shared: timings are not the point here
            "photos_per_condition": args.n,
            "model": f"{args.model}, its recipe for {args.epochs} epochs on the 60,000 training digits",
            "split": args.split,
            "held_out": list(HELD_OUT),
            "table": table,
            "markdown": markdown,
        }
        MEASUREMENT.write_text(json.dumps(record, indent=1) + "\n")
        print("written", MEASUREMENT)


if __name__ == "__main__":
    main()
