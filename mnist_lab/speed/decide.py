"""How `Speed.auto` chooses its switches: by timing a few training steps on the machine at hand.

Which switches pay depends on the chip, not on the kind of device: bfloat16 is 3.8×
faster for `keras_cnn` on a CPU with AVX-512 BF16 and slower on one without; the
fused optimiser pays on one CPU and not on another. So for one model, device and
recipe (batch size, optimiser), `decide` trains a copy of the model for a few steps
with each candidate, all from the same weights on the same batches, and keeps:

- the fastest candidate that is at least `MARGIN` faster than the plain loop,
- among those whose training loss after the first epoch of steps stays within the
  noise: the loss gap between two plain runs from different initial weights.

Candidates, in every combination that applies (`candidates`):

- ``fused``: the optimiser's one-kernel update (SGD, Adam). `make_optimizer` uses it
  on CUDA already, so it is a candidate only elsewhere.
- ``channels_last``: CNNs only.
- ``pool_first``: models with a ReLU → max-pool pair (`pool_before_relu`).
- ``amp``: bfloat16 autocast, only where the device computes in bfloat16 natively.
- ``cuda_graph``: on CUDA, for SGD and Adam recipes.

Then, on a CPU with more than one thread, fewer threads (`thread_counts`: half, and
one): small steps can lose more to waking and joining threads than they gain. The
first choice is timed again beside each smaller count, in rounds of their own, and
a count is kept if it makes the step at least `MARGIN` faster with the loss within
the noise. `Speed` sets it for the training steps only (`mnist_lab.speed.on_threads`).

torch.compile is not a candidate: compiling costs tens of seconds per model, and on
the 2-core AMD EPYC (torch 2.14.1) it made `cnn5x5`'s bfloat16 step slower
(15.5 s against 7.9 s an epoch). Ask for it with ``Speed(compile=True)``.

The decision is cached as JSON in ``$MNIST_LAB_CACHE`` (default
``~/.cache/mnist_lab``), keyed by model, parameter count, layers, device name, torch
version, batch size, optimiser and thread count, so each machine measures once. On a
CPU with glibc the candidates are timed with freed memory kept, as `fit` trains
(`mnist_lab.devices.keep_freed_memory`), and the key says so: decisions timed before
that was done are measured again.
A cache that cannot be read or written is ignored: the decision is then measured again.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data import DeviceLoader, load_mnist
from ..devices import bf16_supported, glibc, keep_freed_memory, synchronize
from ..errors import MnistLabError
from ..files import write_json
from ..train import loss_function, make_optimizer, schedule
from . import GRAPH_OPTIMIZERS, Speed, is_convolutional, relu_pool_pairs

MARGIN = 1.10  # a combination is chosen only if at least 10 % faster per step than the plain loop
TIMED_EPOCH_SECONDS = 0.25  # each candidate's timed epoch lasts about this long ...
MIN_STEPS, MAX_STEPS = 4, 64  # ... with at least 4 and at most 64 steps
ROUNDS = 3  # each candidate is timed once per round, rounds interleaved; its fastest epoch counts ...
LONG_EPOCH_SECONDS = 1.0  # ... unless one timed epoch is this long (AlexNet on a CPU): then one round does
INTERLEAVE_BYTES = 2**30  # interleave when every candidate's copy fits in this much; else one after the other
ENV_CACHE = "MNIST_LAB_CACHE"
CACHE_FILE = "speed-decisions.json"
SWITCHES = ("fused", "channels_last", "pool_first", "amp", "cuda_graph")


@dataclass
class Trial:
    """One candidate's measurement: seconds per step and the loss after its first epoch of steps."""

    switches: dict[str, Any]  # switch name -> on; ``threads`` -> a thread count where one was tried
    seconds_per_step: float
    loss: float
    error: str | None = None  # why the candidate could not run here

    @property
    def ok(self) -> bool:
        """Whether the candidate ran and its loss is a number."""
        return self.error is None and math.isfinite(self.seconds_per_step) and math.isfinite(self.loss)


@dataclass
class Decision:
    """What `decide` measured and chose for one model, device and recipe."""

    key: str
    device: str
    chosen: dict[str, bool]
    trials: list[Trial]
    noise: float  # |loss gap| between two plain runs from different initial weights
    steps: int  # steps per timed epoch
    date: str
    rounds: int = ROUNDS  # timed epochs per candidate
    reference: Trial | None = None  # the first choice, timed again beside the smaller thread counts
    cached: bool = False

    @property
    def plain(self) -> Trial:
        """The plain loop's trial (every switch off): the baseline."""
        return self.trials[0]

    def speedup(self, trial: Trial) -> float:
        """How many times faster than the plain loop `trial`'s step is.

        A fewer-threads trial was timed beside `reference`, not beside the plain loop:
        its speed-up is the first choice's, times how much faster than `reference` it was.
        """
        if not trial.ok:
            return math.nan
        if "threads" in trial.switches and self.reference is not None:
            first = next(t for t in self.trials if t.switches == self.reference.switches)
            return self.speedup(first) * self.reference.seconds_per_step / trial.seconds_per_step
        return self.plain.seconds_per_step / trial.seconds_per_step

    def verdict(self, trial: Trial) -> str:
        """Why `trial` was or was not chosen, in a few words."""
        if trial.error:
            return f"cannot run here: {trial.error}"
        if trial.switches == self.chosen:
            return "chosen"
        if abs(trial.loss - self.plain.loss) > self.tolerance:
            return "loss outside the noise"
        if "threads" in trial.switches and self.reference is not None:
            if self.reference.seconds_per_step / trial.seconds_per_step < MARGIN:
                return f"less than {MARGIN - 1:.0%} faster than on all threads"
            return "slower than the chosen one"
        if trial is not self.plain and self.speedup(trial) < MARGIN:
            return f"less than {MARGIN - 1:.0%} faster"
        return "slower than the chosen one"

    @property
    def tolerance(self) -> float:
        """The largest loss gap a candidate may have from the plain loop (the noise, at least 0.001)."""
        return max(self.noise, 1e-3)

    def describe(self) -> str:
        """One line: what was chosen, how much faster, and where the decision came from."""
        chosen = next(t for t in self.trials if t.switches == self.chosen)
        source = "cached decision" if self.cached else "measured now"
        return (
            f"{Speed(**self.chosen).describe()} ({self.speedup(chosen):.2f}× the plain step; "
            f"{source}, {self.date}, {self.device})"
        )

    def table(self) -> str:
        """Every candidate as a row: switches, ms per step, speed-up, loss, verdict."""
        width = max(38, *(len(Speed(**t.switches).describe()) for t in self.trials))
        rows = [f"{'switches':<{width}s} {'ms/step':>8s} {'× plain':>8s} {'loss':>8s}  verdict"]
        for t in self.trials:
            ms = f"{1000 * t.seconds_per_step:8.2f}" if t.ok else f"{'-':>8s}"
            x = f"{self.speedup(t):8.2f}" if t.ok else f"{'-':>8s}"
            loss = f"{t.loss:8.4f}" if t.ok else f"{'-':>8s}"
            rows.append(f"{Speed(**t.switches).describe():<{width}s} {ms} {x} {loss}  {self.verdict(t)}")
        rows.append(
            f"({self.steps} steps per timed epoch, fastest of {self.rounds} interleaved round(s); loss after 1 epoch, "
            f"noise {self.noise:.4f} = gap between two plain runs from different initial weights; {self.device})"
        )
        if self.reference is not None and self.reference.ok:
            rows.append(
                f"(threads=N rows: timed in rounds of their own beside the first choice, "
                f"{Speed(**self.reference.switches).describe()}, again at "
                f"{1000 * self.reference.seconds_per_step:.2f} ms/step; × plain scaled by that)"
            )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the cache and the bench report)."""
        return {k: v for k, v in asdict(self).items() if k != "cached"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """The inverse of `to_dict`; cached unless `data` says otherwise (a bench report does)."""
        trials = [Trial(**t) for t in data["trials"]]
        reference = Trial(**data["reference"]) if data.get("reference") else None
        names = {f.name for f in fields(cls)} - {"trials", "reference", "cached"}
        given = {k: data[k] for k in names if k in data}
        return cls(trials=trials, reference=reference, cached=data.get("cached", True), **given)


# --- what to try, and where to keep the answer ----------------------------------------


def applicable_switches(model: nn.Module, device: torch.device, config: TrainConfig) -> list[str]:
    """The switches that can change anything for `model` on `device` with `config`."""
    applicable = []
    fusable = config.optimizer in GRAPH_OPTIMIZERS
    if fusable and device.type == "cpu":  # CUDA: make_optimizer fuses already; MPS has no fused kernels
        applicable.append("fused")
    if is_convolutional(model):
        applicable.append("channels_last")
    if relu_pool_pairs(model):
        applicable.append("pool_first")
    if bf16_supported(device):
        applicable.append("amp")
    if fusable and device.type == "cuda":
        applicable.append("cuda_graph")
    return applicable


def candidates(model: nn.Module, device: torch.device, config: TrainConfig) -> list[dict[str, bool]]:
    """Every combination of the switches that apply to `model` on `device`; the plain loop first."""
    names = applicable_switches(model, device, config)
    combos = itertools.product((False, True), repeat=len(names))
    return [{name: name in names and on[names.index(name)] for name in SWITCHES} for on in combos]


def thread_counts(threads: int) -> list[int]:
    """The smaller CPU thread counts worth timing beside `threads`: half of them, and one."""
    return sorted({threads // 2, 1} - {0, threads}, reverse=True) if threads > 1 else []


def fewer_threads(device: torch.device) -> list[int]:
    """`thread_counts` of PyTorch's thread count now, on a CPU; none elsewhere (the host only launches work)."""
    return thread_counts(torch.get_num_threads()) if device.type == "cpu" else []


def device_name(device: torch.device) -> str:
    """The chip, as precisely as the machine says: CPU model (and bf16), or GPU name."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return f"mps (Apple GPU, {platform.machine()})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    bf16 = ", native bf16" if bf16_supported(device) else ""
    return f"cpu ({model}, {torch.get_num_threads()} threads{bf16})"


def decision_key(model: nn.Module, device: torch.device, config: TrainConfig) -> str:
    """What a decision depends on: model, its layers, chip, torch version, batch size, optimiser, candidates."""
    parameters = sum(p.numel() for p in model.parameters())
    layers = hashlib.sha256(repr(model).encode()).hexdigest()[:8]  # the same class with its layers reordered differs
    return (
        f"{type(model).__name__}|{parameters}|layers {layers}|{device_name(device)}|torch {torch.__version__}|"
        f"batch {config.batch_size}|{config.optimizer}|tried {','.join(applicable_switches(model, device, config))}"
        f"|threads {','.join(map(str, fewer_threads(device)))}"
        f"{'|freed memory kept' if device.type == 'cpu' and glibc() else ''}"
    )


def cache_path() -> Path:
    """The JSON file that keeps decisions: ``$MNIST_LAB_CACHE/speed-decisions.json`` or under ``~/.cache/mnist_lab``."""
    root = os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "mnist_lab"
    return Path(root).expanduser() / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable or damaged: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(decision: Decision) -> None:
    entries = _read_cache()
    entries[decision.key] = decision.to_dict()
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_json(cache_path(), entries)
    except (OSError, MnistLabError):  # a read-only home: the decision still holds for this run
        pass


# --- the measurement -----------------------------------------------------------------


def decide(
    model: nn.Module,
    device: torch.device | str,
    config: TrainConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    use_cache: bool = True,
) -> Decision:
    """Measure (or read from the cache) which switches pay for `model` on `device` with `config`.

    `config` defaults to the model's recipe. `model` itself is not changed: every
    candidate trains a copy.
    """
    device = torch.device(device)
    config = config or getattr(model, "RECIPE", TrainConfig())
    key = decision_key(model, device, config)
    if use_cache and key in (cached := _read_cache()):
        try:
            return Decision.from_dict(cached[key])
        except (KeyError, TypeError):  # an entry from another version of this file
            pass
    with _random_state_kept(device):  # a seeded run draws the same numbers whether or not the cache had the answer
        decision = _measured(model, device, config, key, data_dir)
    if use_cache:
        _write_cache(decision)
    return decision


def _random_state_kept(device: torch.device):
    """Restore PyTorch's global random state (CPU, and the accelerator's) when the block ends."""
    if device.type in ("cuda", "mps"):
        return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)
    return torch.random.fork_rng(devices=[])


def _measured(model: nn.Module, device: torch.device, config: TrainConfig, key: str, data_dir) -> Decision:
    """Time every candidate on the same real batches; the noise is a plain run from other initial weights.

    On the CPU, freed memory is kept first, as `fit` keeps it (`keep_freed_memory`).
    """
    if device.type == "cpu":
        keep_freed_memory()
    images, labels = load_mnist("train", data_dir)

    def batches(steps: int) -> DeviceLoader:  # the same batches, in the same order, for every candidate
        return DeviceLoader(
            images[: steps * config.batch_size], labels[: steps * config.batch_size],
            batch_size=config.batch_size, normalize=config.normalize, device=device, seed=config.seed,
        )  # fmt: skip

    probe = _measure(model, [{}], config, lambda: batches(MIN_STEPS), MIN_STEPS)[0]
    steps = MIN_STEPS if not probe.ok else round(TIMED_EPOCH_SECONDS / probe.seconds_per_step)
    steps = min(max(steps, MIN_STEPS), MAX_STEPS, len(labels) // config.batch_size)
    rounds = ROUNDS if not probe.ok or steps * probe.seconds_per_step < LONG_EPOCH_SECONDS else 1
    trials = _measure(model, candidates(model, device, config), config, lambda: batches(steps), steps, rounds)
    other_start = _Candidate(model, {}, config, batches(steps), steps, reinitialise=True)
    other_start.warm_up()
    noise = abs(other_start.loss - trials[0].loss) if math.isfinite(other_start.loss) and trials[0].ok else 0.0
    today = dt.date.today().isoformat()
    decision = Decision(key, device_name(device), trials[0].switches, trials, noise, steps, today, rounds)
    decision.chosen = _choose(decision)
    if counts := fewer_threads(device):  # the first choice again, beside the same with fewer threads
        combos = [decision.chosen] + [{**decision.chosen, "threads": n} for n in counts]
        decision.reference, *fewer = _measure(model, combos, config, lambda: batches(steps), steps, rounds)
        decision.trials += fewer
        decision.chosen = _choose_threads(decision)
    return decision


def _choose(decision: Decision) -> dict[str, bool]:
    """The fastest trial that pays by `MARGIN` with its loss within the noise; else the plain loop."""
    plain = decision.plain
    good = [
        t
        for t in decision.trials[1:]
        if t.ok and abs(t.loss - plain.loss) <= decision.tolerance and decision.speedup(t) >= MARGIN
    ]
    return min(good, key=lambda t: t.seconds_per_step).switches if good and plain.ok else plain.switches


def _choose_threads(decision: Decision) -> dict[str, Any]:
    """The fastest fewer-threads trial that beats `reference` by `MARGIN` with its loss within the noise."""
    reference = decision.reference
    good = [
        t
        for t in decision.trials
        if "threads" in t.switches
        and t.ok
        and abs(t.loss - decision.plain.loss) <= decision.tolerance
        and reference.seconds_per_step / t.seconds_per_step >= MARGIN
    ]
    return min(good, key=lambda t: t.seconds_per_step).switches if good and reference.ok else decision.chosen


ERRORS = (RuntimeError, NotImplementedError, ValueError, MnistLabError)  # a switch this device cannot run


class _Candidate:
    """A copy of the model with one combination of switches, trained epoch by epoch on its own batches."""

    def __init__(self, model, switches, config: TrainConfig, loader: DeviceLoader, steps: int, reinitialise=False):
        self.switches: dict[str, Any] = {name: bool(switches.get(name)) for name in SWITCHES}
        if switches.get("threads"):
            self.switches["threads"] = switches["threads"]
        self.loader, self.steps, self.seed = loader, steps, config.seed
        self.loss, self.seconds, self.error = math.nan, [], None
        net = copy.deepcopy(model).to(loader.device)
        if reinitialise:
            _reinitialise(net, config.seed + 1)
        try:
            optimizer, loss_fn = make_optimizer(net, config), loss_function(net, config.label_smoothing)
            self.run = Speed(**self.switches).prepare(net, optimizer, loss_fn, loader, schedule(config, loader))
        except ERRORS as error:
            self.error = _first_line(error)

    def warm_up(self) -> None:
        """The untimed first epoch (first-call costs, graph recording); its loss is the one compared."""
        torch.manual_seed(self.seed)  # the same dropout masks for every candidate
        if self.error is None:
            try:
                loss, _, diverged = self.run(_as_is)
                self.loss = math.nan if diverged else loss
            except ERRORS as error:
                self.error = _first_line(error)

    def time_epoch(self) -> None:
        """One timed epoch, from a quiet device to a quiet device."""
        if self.error is None:
            try:
                self.seconds.append(_timed(self.run, self.loader.device))
            except ERRORS as error:
                self.error = _first_line(error)

    def trial(self) -> Trial:
        """The measurement: the fastest timed epoch per step, and the warm-up loss."""
        if self.error is not None or not self.seconds:
            return Trial(self.switches, math.nan, math.nan, self.error or "not timed")
        return Trial(self.switches, min(self.seconds) / self.steps, self.loss)


def _measure(
    model, combos, config: TrainConfig, batches: Callable[[], DeviceLoader], steps: int, rounds: int = ROUNDS
) -> list[Trial]:
    """Time every combination; interleaved in `rounds` rounds where all the copies fit in memory."""
    per_copy = 3 * sum(p.numel() * p.element_size() for p in model.parameters())  # weights, gradients, state
    group = len(combos) if per_copy * len(combos) <= INTERLEAVE_BYTES else 1
    trials = []
    for start in range(0, len(combos), group):
        runs = [_Candidate(model, c, config, batches(), steps) for c in combos[start : start + group]]
        for run in runs:
            run.warm_up()
        for _ in range(rounds):  # a slow moment of the machine then costs every candidate alike
            for run in runs:
                run.time_epoch()
        trials += [run.trial() for run in runs]
    return trials


def _first_line(error: BaseException) -> str:
    return ((str(error).strip().splitlines() or [type(error).__name__])[0])[:120]


def _as_is(batches):
    return batches


def _timed(run: Callable, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run(_as_is)
    synchronize(device)
    return time.perf_counter() - start


def _reinitialise(net: nn.Module, seed: int) -> None:
    """Draw new initial weights for `net` (the noise measurement's second start)."""
    torch.manual_seed(seed)
    for module in net.modules():
        if module is not net and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def decisions_table(decisions: dict[str, Decision]) -> str:
    """Several models' decisions, one block each (for the bench report and notebook 08)."""
    return "\n\n".join(f"{name}: {d.describe()}\n{d.table()}" for name, d in decisions.items())
