"""Page faults per training step, and ms per step, with glibc's default malloc and with freed memory kept.

Each measurement runs in a fresh interpreter (`keep_freed_memory` cannot be undone), three
times per setting, the two settings taking turns. A step is `Speed.prepare`'s epoch runner
over 150 batches of random images at the model's recipe batch size, after one untimed epoch;
the median of 3 timed epochs is printed. Three ways to train:

- plain: float32, NCHW (the tutorials' arithmetic; `fit` without switches);
- fp32-cl: float32, channels-last, fused optimiser, pool_first where it applies (what
  `Speed.auto` picks on a CPU without native bfloat16);
- bf16-cl: the same plus bfloat16 autocast (what it picks on this CPU).

Run: python docs/bench-cpu-2026-12-03/page_faults.py [model ...]   (default: convnet keras_cnn cnn5x5)
"""

import statistics
import subprocess
import sys

CHILD = """
import resource, statistics, sys, time, torch
from mnist_lab.devices import keep_freed_memory
from mnist_lab.models import MODELS
from mnist_lab.speed import Speed, relu_pool_pairs
from mnist_lab.train import loss_function, make_optimizer

name, way, memory = sys.argv[1:]
if memory == "kept":
    assert keep_freed_memory()
torch.manual_seed(0)
model = MODELS[name]()
config = model.RECIPE
tuned = way != "plain"
speed = Speed(amp=way == "bf16-cl", channels_last=tuned, fused=tuned, pool_first=tuned and bool(relu_pool_pairs(model)))
X, Y = torch.randn(150 * config.batch_size, 1, 28, 28), torch.randint(0, 10, (150 * config.batch_size,))
batches = [(X[i : i + config.batch_size], Y[i : i + config.batch_size]) for i in range(0, len(X), config.batch_size)]
run = speed.prepare(model, make_optimizer(model, config), loss_function(model), batches)
run(lambda b: b)
ms, faults = [], []
for _ in range(3):
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    run(lambda b: b)
    ms.append((time.perf_counter() - start) / len(batches) * 1e3)
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(batches))
print(statistics.median(ms), statistics.median(faults))
"""


def main(models: list[str]) -> None:
    print("| model | way | default: ms/step (3 processes) | faults/step | kept: ms/step (3 processes) | faults/step |")
    print("|---|---|---|---:|---|---:|")
    for name in models:
        for way in ("plain", "fp32-cl", "bf16-cl"):
            runs = {"default": [], "kept": []}
            for _ in range(3):
                for memory in runs:
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, name, way, memory], capture_output=True, text=True, check=True
                    ).stdout.split()
                    runs[memory].append((float(out[0]), float(out[1])))
            cells = []
            for got in runs.values():
                times = ", ".join(f"{ms:.2f}" for ms, _ in got)
                cells += [f"{times} (median {statistics.median(ms for ms, _ in got):.2f})",
                          f"{statistics.median(f for _, f in got):.0f}"]  # fmt: skip
            print(f"| `{name}` | {way} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["convnet", "keras_cnn", "cnn5x5"])
