"""How close `fit`'s epoch is to the bare training step, and where that step's time goes (2-core CPU).

For each CNN, with the switches `Speed.auto` chose for its recipe on this machine (the cached
decision), one process times, in rounds taking turns:

- ``fit's epoch``: the epoch runner `fit` uses (`Speed.prepare`) over a `DeviceLoader` of the
  recipe's batch size: drawing and normalising each batch, the step, the running sums;
- ``bare step``: `train_epoch` with the same switches over the same batches made beforehand
  (drawing them costs nothing inside the timed loop);
- ``batches alone``: the `DeviceLoader` with no model.

Then torch.profiler records 20 steps of the bare loop and prints the operations that took most time.
If `fit`'s epoch is within a few per cent of the bare step, nothing around the step is left to remove:
a faster epoch needs faster kernels (or fewer of them).

Run: ``MNIST_LAB_DATA=... python docs/bench-cpu-2026-12-03/step_ceiling.py`` (about 3 minutes).
"""

import statistics
import time

import torch
from torch.profiler import profile

from mnist_lab.data import DeviceLoader
from mnist_lab.devices import describe, keep_freed_memory
from mnist_lab.models import build_model
from mnist_lab.speed import Speed
from mnist_lab.train import loss_function, make_optimizer, train_epoch

MODELS = ("convnet", "keras_cnn", "cnn5x5")
STEPS = 200  # steps per timed pass
ROUNDS = 5


def per_step_ms(seconds: float) -> float:
    return seconds / STEPS * 1000


def measure(name: str) -> None:
    model = build_model(name, seed=0)
    config = model.RECIPE
    speed = Speed.auto(model, "cpu", config)
    if speed.threads:  # fit sets it for its epochs only; here every pass runs on it
        torch.set_num_threads(speed.threads)
    loader = DeviceLoader.from_mnist(
        "train", batch_size=config.batch_size, normalize=config.normalize, limit=STEPS * config.batch_size
    )
    optimizer, loss_fn = make_optimizer(model, config), loss_function(model, config.label_smoothing)
    run = speed.prepare(model, optimizer, loss_fn, loader)  # fit's epoch runner (constant learning rate)
    batches = list(loader)  # made once: (B, 1, 28, 28) float32, (B,)
    if speed.channels_last:
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    times: dict[str, list[float]] = {"fit's epoch": [], "bare step": [], "batches alone": []}
    run(lambda b: b)  # warm-up
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run(lambda b: b)
        times["fit's epoch"].append(time.perf_counter() - start)
        start = time.perf_counter()
        train_epoch(model, batches, optimizer, loss_fn, amp=speed.amp)
        times["bare step"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in loader:
            pass
        times["batches alone"].append(time.perf_counter() - start)
    print(f"\n{name}: batch {config.batch_size}, switches {speed.describe()}; ms per step, median of {ROUNDS}")
    for what, seconds in times.items():
        ms = [per_step_ms(s) for s in seconds]
        print(f"  {what:<14} {statistics.median(ms):7.3f}   (all: {', '.join(f'{m:.2f}' for m in ms)})")
    with profile() as prof:
        train_epoch(model, batches[:20], optimizer, loss_fn, amp=speed.amp)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=45)
    print(f"  the bare loop's 20 steps under torch.profiler, by self CPU time:\n{table}")


if __name__ == "__main__":
    keep_freed_memory()  # as fit does on a CPU
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{describe(torch.device('cpu'))}; torch {torch.__version__}; {when}")
    for model_name in MODELS:
        measure(model_name)
