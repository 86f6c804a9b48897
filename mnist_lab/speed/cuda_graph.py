"""Whole training steps as CUDA graphs: one launch per optimiser step.

On a GPU a small model's training step is a few dozen tiny kernels, each launched
from Python through PyTorch's dispatcher, so the GPU spends most of the step waiting
for the CPU. A CUDA graph records every kernel of one step once and replays them
all with a single launch. `GraphedEpochs` records the *whole* step: drawing the
batch from the uint8 images on the device (`DeviceLoader`'s data), normalising it,
forward, loss, backward, the optimiser update, the learning rate of the step, and
the running loss and accuracy sums. Per step Python does one ``replay()``.

Why the result is the same as `fit`'s plain loop:

- Recording needs a few real steps first (memory pools, cuDNN's algorithm choice,
  the optimiser's state tensors). The weights, BatchNorm statistics, optimiser state
  and CUDA random state are saved before those warm-up steps and put back after, in
  place (the graph holds the addresses of those tensors, so they are never replaced).
- Optimiser state put back as zeros is a fresh optimiser: Adam's first step from zero
  moments and a zero step count, and SGD momentum ``buf = 0 * m + g`` (no dampening)
  are exactly their first steps.
- Each epoch draws its permutation from the loader's own generator, as iterating the
  `DeviceLoader` would. A last, smaller batch (when ``drop_last`` is off) runs as one
  ordinary eager step on the same tensors.

What it needs: CUDA, a `DeviceLoader`, SGD or Adam with fused kernels (what
`make_optimizer` builds on CUDA), and no torch.compile (use the plain model).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..data import DeviceLoader
from ..errors import InvalidParameterError
from ..train import CHECK_EVERY, EpochResult

GRAPH_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam)
RECORD_WARMUP_STEPS = 3  # eager steps before recording (the PyTorch docs' recipe uses a few)


def graph_problem(loader: object, optimizer: torch.optim.Optimizer, device: torch.device) -> str | None:
    """Why `GraphedEpochs` cannot train with these, or None when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA GPU, and this run is on {device.type}"
    if not isinstance(loader, DeviceLoader):
        return "CUDA graphs need the training batches from a DeviceLoader (data resident on the GPU)"
    if not isinstance(optimizer, GRAPH_OPTIMIZERS) or not all(g.get("fused") for g in optimizer.param_groups):
        return "CUDA graphs need SGD or Adam with fused=True (what make_optimizer builds on CUDA)"
    if len(loader.labels) < loader.batch_size:
        return "CUDA graphs need at least one full batch"
    return None


class GraphedEpochs:
    """Train `model` one epoch at a time by replaying one recorded CUDA graph per step.

    `lr(step)` is the learning rate of each step of the run (None: the optimiser's
    constant learning rate), the same function `mnist_lab.train.train_epoch` uses;
    `start_step` is the step this object starts at (non-zero when a run is resumed).
    Each epoch copies that epoch's learning rates to the GPU once; the graph reads
    its step's rate from there.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: DeviceLoader,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., Tensor],
        amp: bool = False,
        lr: Callable[[int], float] | None = None,
        start_step: int = 0,
    ) -> None:
        device = loader.device
        problem = graph_problem(loader, optimizer, device)
        if problem:
            raise InvalidParameterError(f"{problem}. Train with cuda_graph=False instead.")
        self.model, self.loader, self.optimizer, self.loss_fn, self.amp = model, loader, optimizer, loss_fn, amp
        n, b = len(loader.labels), loader.batch_size
        self.full_steps = n // b
        self.tail = 0 if loader.drop_last else n - self.full_steps * b
        self.order = torch.arange(n, device=device)  # this epoch's sample order, rewritten in place
        self.batch_rows = self.order[: self.full_steps * b].view(self.full_steps, b)  # (steps, B) view
        self.step_in_epoch = torch.zeros(1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.step = start_step  # the run's step counter, on the host
        self.lr_fn = lr
        self.lr = self.lr_table = None
        if lr is not None:
            self.lr = torch.tensor(lr(start_step), dtype=torch.float32, device=device)
            self.lr_table = torch.zeros(max(1, self.full_steps), dtype=torch.float32, device=device)  # (steps,)
        self.graph = self._record()

    # --- one step, recorded or eager -------------------------------------------------

    def _train_step(self, idx: Tensor, eager: bool = False) -> None:
        """One optimiser step on the samples `idx` (B,), all on the device, no host sync.

        Recorded (and its warm-up), the optimiser reads its learning rate from `self.lr`,
        set here from this epoch's table; `eager` steps use the float in the param group.
        """
        if self.lr_table is not None and not eager:
            self.lr.copy_(self.lr_table.index_select(0, self.step_in_epoch).view(()))
        x, y = self.loader.batch(idx)  # x (B, 1, 28, 28), y (B,)
        # Autocast's weight cache must be off inside a CUDA graph (PyTorch's CUDA graphs notes).
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            out = self.model(x)  # (B, 10)
            loss = self.loss_fn(out.float(), y)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(idx)
        self.correct += (out.argmax(dim=1) == y).sum()

    def _record(self) -> torch.cuda.CUDAGraph:
        saved = _snapshot(self.model, self.optimizer)
        self._use_lr_tensor(True)
        first = self.batch_rows[0]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        self.model.train()
        with torch.cuda.stream(side):  # warm-up on a side stream, as PyTorch's docs recipe does
            for _ in range(RECORD_WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self._train_step(first)
        torch.cuda.current_stream().wait_stream(side)
        _restore(self.model, self.optimizer, saved)
        self.optimizer.zero_grad(set_to_none=True)  # gradients are then allocated in the graph's memory
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            rows = self.batch_rows.index_select(0, self.step_in_epoch).view(-1)  # (B,)
            self._train_step(rows)
            self.step_in_epoch += 1
        self._use_lr_tensor(False)
        torch.cuda.synchronize()
        return graph

    def _use_lr_tensor(self, on: bool) -> None:
        """While recording, the optimiser reads its learning rate from `self.lr` (and Adam is capturable).

        Outside, its param groups hold plain floats again, so checkpoints and eager
        steps look exactly like those of an ordinary optimiser.
        """
        for group in self.optimizer.param_groups:
            if self.lr is not None:
                group["lr"] = self.lr if on else self.lr_fn(self.step)
            if "capturable" in group:
                group["capturable"] = on

    # --- epochs ------------------------------------------------------------------

    def epoch(self, progress: Callable[[range], object] | None = None) -> EpochResult:
        """Train one epoch. Returns mean loss, accuracy, and whether the loss diverged."""
        self.model.train()
        if self.lr_table is not None:  # this epoch's learning rates, one copy to the GPU
            rates = [self.lr_fn(self.step + i) for i in range(self.full_steps)]
            self.lr_table.copy_(torch.tensor(rates, dtype=torch.float32))
        if self.loader.shuffle:  # the same draw as iterating the DeviceLoader
            gen = self.loader.generator
            self.order.copy_(torch.randperm(len(self.order), generator=gen, device=gen.device))
        self.step_in_epoch.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()
        steps = range(self.full_steps)
        for i in progress(steps) if progress else steps:
            self.graph.replay()
            self.step += 1
            if (i + 1) % CHECK_EVERY == 0 and not torch.isfinite(self.loss_sum):
                return math.nan, math.nan, True
        if self.tail:
            self._eager_tail()
        count = self.full_steps * self.loader.batch_size + self.tail
        mean_loss = self.loss_sum.item() / count  # the one read of the epoch
        return mean_loss, self.correct.item() / count, not math.isfinite(mean_loss)

    def _eager_tail(self) -> None:
        """The last, smaller batch: one ordinary step on the same parameters and gradients."""
        self.optimizer.zero_grad(set_to_none=False)  # in place: the gradients live in the graph's memory
        if self.lr_fn is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_fn(self.step)
        self._train_step(self.order[self.full_steps * self.loader.batch_size :], eager=True)
        self.step += 1


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple:
    tensors = [t for t in itertools.chain(model.parameters(), model.buffers())]
    state = {p: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in optimizer.state.items()}
    return tensors, [t.detach().clone() for t in tensors], state, torch.cuda.get_rng_state()


@torch.no_grad()
def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved: tuple) -> None:
    tensors, values, state, rng = saved
    for tensor, value in zip(tensors, values):
        tensor.copy_(value)  # in place: the same tensors, their old values
    for param, param_state in optimizer.state.items():
        for key, value in param_state.items():
            if not torch.is_tensor(value):
                continue
            if param in state:
                value.copy_(state[param][key])
            else:
                value.zero_()  # state born in the warm-up: zeros are a fresh optimiser's
    torch.cuda.set_rng_state(rng)
