"""The fast recipe with bfloat16 and channels-last, with and without the fused optimiser, seed by seed.

`train_fast` (what ``mnist-lab bench --fast`` runs) with each set of switches, taking turns seed by
seed (0-3) in one process. Run from the repository root:
``python docs/bench-cpu-2026-12-03/fast_fused_or_not.py``.
"""

import statistics
import time

from mnist_lab.speed import Speed
from mnist_lab.speed.fast_recipe import train_fast

VARIANTS = {
    "amp, channels_last": Speed(amp=True, channels_last=True),
    "amp, channels_last, fused": Speed(amp=True, channels_last=True, fused=True),
}

if __name__ == "__main__":
    runs = {name: [] for name in VARIANTS}
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), flush=True)
    for seed in range(4):
        for name, speed in VARIANTS.items():
            run = train_fast(seed, device="cpu", speed=speed)
            runs[name].append(run)
            print(f"{name:<26} seed {seed}: {run.test_acc:.4f} {run.train_seconds:.2f} s", flush=True)
    for name, done in runs.items():
        seconds = statistics.fmean(r.train_seconds for r in done)
        print(f"{name:<26} mean {seconds:.2f} s, acc {statistics.fmean(r.test_acc for r in done):.4f}")
