"""Speed: everything in mnist_lab whose only purpose is to train faster.

The core (`mnist_lab.train`) never imports this package. `fit` takes a ``speed``
object and asks its ``prepare`` for the function that runs one epoch; `Speed` is
that object. Its switches:

- ``fused``: the optimiser's one-kernel update (SGD, Adam; `make_optimizer` uses it
  on CUDA by itself).
- ``channels_last``: store the model's 4-d weights, and so its feature maps, as
  (N, H, W, C). CNNs only.
- ``amp``: bfloat16 autocast. Pays where the hardware computes in bfloat16.
- ``compile``: torch.compile (``True`` or a mode such as ``"reduce-overhead"``).
- ``cuda_graph``: record the whole training step as one CUDA graph and replay it
  (`mnist_lab.speed.cuda_graph`): CUDA, a `DeviceLoader`, SGD or Adam.
- ``pool_first``: where a ReLU feeds a max-pool (conv → ReLU → pool, as T0 and T4
  write their CNNs), pool first (`pool_before_relu`): the same function and gradients,
  ReLU on a quarter of the values.
- ``threads``: how many CPU threads PyTorch uses for the training steps (``None``: as
  many as it uses already). Set at the start of each epoch and put back at its end
  (`on_threads`), so evaluation and everything after `fit` keep the session's setting.

`Speed.auto(model, device)` turns on what pays *on this machine*: it times a few
training steps with each combination of the switches that apply, keeps the fastest
one that is clearly faster and trains to the same loss, and on a CPU then tries it on
fewer threads (`mnist_lab.speed.decide`; the decision is cached, so each machine
measures once).

Also here: `fast_recipe` (99 % in seconds) and `bench` (the tutorials' loop against
ours, and notebook 08's ladder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..errors import InvalidParameterError, check_bool, check_choice, check_int
from ..train import EpochResult, EpochRunner, plain_epochs

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_OPTIMIZERS = ("sgd", "adam")  # the optimisers with fused kernels a CUDA graph can record


def is_convolutional(model: nn.Module) -> bool:
    """Whether `model` has a 2-d convolution (the layers that channels-last and bf16 speed up)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass(frozen=True)
class Speed:
    """Which speed switches `fit` uses; each is off by default (the plain loop)."""

    amp: bool = False
    channels_last: bool = False
    compile: bool | str = False
    cuda_graph: bool = False
    fused: bool = False
    pool_first: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        check_bool("fused", self.fused)
        check_bool("pool_first", self.pool_first)
        check_bool("amp", self.amp)
        check_bool("channels_last", self.channels_last)
        check_bool("cuda_graph", self.cuda_graph)
        if not isinstance(self.compile, bool):
            check_choice("compile mode", self.compile, COMPILE_MODES)
        if self.threads is not None:
            check_int("threads", self.threads, minimum=1)
        if self.cuda_graph and self.compile:
            raise InvalidParameterError(
                "cuda_graph=True and compile both replace the training step: choose one "
                "(compile=False, or cuda_graph=False)."
            )

    @classmethod
    def auto(
        cls,
        model: nn.Module,
        device: torch.device | str,
        config: TrainConfig | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> Speed:
        """The switches measured to pay for `model` on `device` with `config` (default: its recipe).

        See `mnist_lab.speed.decide.decide`, which also returns the measurements.
        """
        from .decide import decide

        return cls(**decide(model, device, config, data_dir).chosen)

    def describe(self) -> str:
        """The switches that are on, e.g. ``"amp, channels_last, threads=1"`` (or ``"no extra switches"``)."""
        on = [f"{k}={v}" if k == "threads" or isinstance(v, str) else k for k, v in asdict(self).items() if v]
        return ", ".join(on) or "no extra switches"

    def prepare(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., Tensor],
        loader: Iterable,
        lr: Callable[[int], float] | None = None,
        start_epoch: int = 0,
    ) -> EpochRunner:
        """Apply the switches to `model` and return the function that trains one epoch."""
        device = next(model.parameters()).device
        if self.fused:  # read by SGD and Adam at every step; their state is created at the first one
            for group in optimizer.param_groups:
                group.update(fused=True, foreach=False)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.pool_first:
            pool_before_relu(model)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # time the algorithms once per shape, keep the fastest
        if self.cuda_graph:
            run = _graphed_epochs(model, optimizer, loss_fn, loader, self.amp, lr, start_epoch)
        else:
            runner = compiled(model, self.compile) if self.compile else model
            run = plain_epochs(runner, optimizer, loss_fn, loader, lr, start_epoch, amp=self.amp)
        return on_threads(run, self.threads) if self.threads else run


def on_threads(run: EpochRunner, threads: int) -> EpochRunner:
    """`run` with PyTorch on `threads` CPU threads for the epoch, and back on as many as before after it.

    ``torch.set_num_threads`` holds for the whole process: setting it only around the
    training steps leaves evaluation, and the learner's session after `fit`, as they were,
    also when the epoch stops with an error or Ctrl-C.
    """

    def run_on_threads(wrap: Callable[[Iterable], Iterable]) -> EpochResult:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run(wrap)
        finally:
            torch.set_num_threads(before)

    return run_on_threads


def relu_pool_pairs(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Each ReLU directly followed by a max-pool inside an ``nn.Sequential``: (container, index of the ReLU)."""
    return [
        (seq, i)
        for seq in model.modules()
        if isinstance(seq, nn.Sequential)
        for i in range(len(seq) - 1)
        if isinstance(seq[i], nn.ReLU) and isinstance(seq[i + 1], nn.MaxPool2d) and not seq[i + 1].return_indices
    ]


def pool_before_relu(model: nn.Module) -> None:
    """Turn every ReLU → max-pool pair of `model` into max-pool → ReLU, in place.

    The same function, bit for bit, and the same gradients: a window's maximum after
    ReLU is ReLU of its maximum (ReLU never reorders values), and the gradient reaches
    the same element (the first largest one) or, where the maximum is ≤ 0, no element.
    ReLU then runs, forward and backward, on the pooled maps: a quarter of the values
    after a 2×2 pool. Neither layer holds parameters, so the state dict keeps its keys;
    ``print(model)`` shows the new order.
    """
    for seq, i in relu_pool_pairs(model):
        seq[i], seq[i + 1] = seq[i + 1], seq[i]


def _graphed_epochs(model, optimizer, loss_fn, loader, amp, lr, start_epoch) -> EpochRunner:
    """Record the CUDA graph at the first epoch (recording costs a few steps: only when there is work)."""
    from .cuda_graph import GraphedEpochs

    graphed = None

    def run(wrap: Callable[[Iterable], Iterable]) -> EpochResult:
        nonlocal graphed
        if graphed is None:
            graphed = GraphedEpochs(model, loader, optimizer, loss_fn, amp, lr, start_epoch * len(loader))
        return graphed.epoch(wrap)

    return run


class MarkedStep(nn.Module):
    """A compiled model that tells CUDA-graph replay where each step begins.

    With ``mode="reduce-overhead"`` torch.compile records CUDA graphs and reuses their
    output memory; marking every call as a new step keeps an output alive until the
    loop is done with it.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.compiled = torch.compile(model, mode=mode)

    def forward(self, x: Tensor) -> Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def compiled(model: nn.Module, mode: bool | str = True) -> nn.Module:
    """`model` compiled with torch.compile (``True``: the default mode)."""
    mode = "default" if mode is True else mode
    if mode in ("reduce-overhead", "max-autotune"):
        return MarkedStep(model, mode)
    return torch.compile(model, mode=mode)
