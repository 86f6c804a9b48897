"""torch.compile against eager for one CNN's training step, with the switches `Speed.auto` picks on this CPU.

The step is `keras_cnn`'s (or the model named on the command line) at its recipe's batch size over
random batches: bfloat16 autocast, channels-last, the fused optimiser, max-pool before ReLU. Each
mode runs in a fresh process: ``python compile_step.py keras_cnn eager`` and
``python compile_step.py keras_cnn default``. Prints the first steps' seconds (compiling, for
torch.compile) and the fastest of three passes of 64 steps, in ms a step.
"""

import sys
import time

import torch

from mnist_lab.devices import keep_freed_memory
from mnist_lab.models import build_model
from mnist_lab.speed import pool_before_relu
from mnist_lab.train import loss_function, make_optimizer

STEPS = 64


def main(name: str, mode: str) -> None:
    keep_freed_memory()  # as fit does on a CPU
    model = build_model(name, seed=0).to(memory_format=torch.channels_last)
    pool_before_relu(model)
    config = model.RECIPE
    batch = config.batch_size
    images, labels = torch.randn(STEPS * batch, 1, 28, 28), torch.randint(0, 10, (STEPS * batch,))
    optimizer, loss_fn = make_optimizer(model, config, fused=True), loss_function(model, 0.0)
    runner = model if mode == "eager" else torch.compile(model, mode=mode)

    def step(i: int) -> None:
        x, y = images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(runner(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for i in range(3):
        step(i)
    first = time.perf_counter() - start
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(STEPS):
            step(i)
        passes.append((time.perf_counter() - start) / STEPS * 1000)
    print(f"{name} {mode}: first 3 steps {first:.1f} s; {min(passes):.2f} ms a step (fastest of 3 passes of {STEPS})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
