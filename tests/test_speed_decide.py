"""Speed.auto's decision: what it tries, what it keeps, how it falls back, what it caches.

No test here asserts a time: the timings are injected (`_choose`) or only checked to
be numbers; which switch wins on a real machine is the bench's business.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from mnist_lab.config import TrainConfig
from mnist_lab.data import DeviceLoader
from mnist_lab.errors import InvalidParameterError
from mnist_lab.models import FastCNN, build_model
from mnist_lab.speed import Speed, decide, on_threads, pool_before_relu, relu_pool_pairs
from mnist_lab.speed.decide import (
    MARGIN,
    Decision,
    Trial,
    _choose,
    _choose_threads,
    cache_path,
    candidates,
    thread_counts,
)
from mnist_lab.train import loss_function, make_optimizer

SMALL = TrainConfig(batch_size=32)  # a small batch keeps each trial short


def _decision(*trials: Trial, noise: float = 0.01) -> Decision:
    return Decision("key", "cpu (test)", trials[0].switches, list(trials), noise, 8, "2026-12-02")


def _switches(**on: bool) -> dict[str, bool]:
    return {name: on.get(name, False) for name in decide.SWITCHES}


PLAIN = Trial(_switches(), 0.010, 1.000)


def test_the_fastest_candidate_that_pays_and_trains_alike_is_chosen():
    fast = Trial(_switches(amp=True), 0.004, 1.005)
    faster_but_different = Trial(_switches(amp=True, channels_last=True), 0.002, 1.200)  # loss off by 0.2
    barely = Trial(_switches(fused=True), 0.010 / (MARGIN - 0.05), 1.000)  # under the margin
    decision = _decision(PLAIN, barely, fast, faster_but_different)
    assert _choose(decision) == fast.switches
    decision.chosen = _choose(decision)
    assert decision.verdict(faster_but_different) == "loss outside the noise"
    assert decision.verdict(barely).startswith("less than 10% faster")
    assert decision.verdict(fast) == "chosen" and decision.speedup(fast) == pytest.approx(2.5)


def test_nothing_pays_or_nothing_runs_means_the_plain_loop():
    broken = Trial(_switches(amp=True), math.nan, math.nan, "bf16 not supported")
    slower = Trial(_switches(channels_last=True), 0.012, 1.0)
    assert _choose(_decision(PLAIN, broken, slower)) == PLAIN.switches
    assert _decision(PLAIN, broken).verdict(broken) == "cannot run here: bf16 not supported"
    plain_failed = Trial(_switches(), math.nan, math.nan, "out of memory")
    assert _choose(_decision(plain_failed, Trial(_switches(amp=True), 0.001, 1.0))) == plain_failed.switches


def _trained(name: str, speed: Speed, steps: int = 6) -> list[torch.Tensor]:
    """`name`'s parameters after `steps` steps of its recipe's optimiser on the same random batches."""
    model = build_model(name, seed=0)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (steps * 16, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (steps * 16,), generator=generator)
    loader = DeviceLoader(images, labels, batch_size=16, seed=0)
    config = model.RECIPE
    run = speed.prepare(model, make_optimizer(model, config), loss_function(model, 0.0), loader)
    torch.manual_seed(0)  # the same dropout masks with and without the rewrite
    run(lambda batches: batches)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["keras_cnn", "cnn5x5", "examples_cnn"])
@pytest.mark.parametrize("others", [{}, {"amp": True, "channels_last": True}])
def test_pooling_before_relu_trains_bit_for_bit_the_same(name, others):
    usual = _trained(name, Speed(**others))
    pooled_first = _trained(name, Speed(pool_first=True, **others))
    assert all(torch.equal(a, b) for a, b in zip(usual, pooled_first, strict=True))


def test_pool_before_relu_swaps_only_relu_then_max_pool_and_keeps_the_state_dict():
    model = build_model("cnn5x5", seed=0)
    keys, x = list(model.state_dict()), torch.randn(8, 1, 28, 28)
    expected = model(x)
    assert len(relu_pool_pairs(model)) == 2
    pool_before_relu(model)
    layers = [type(m).__name__ for m in model.features]
    assert layers[:6] == ["Conv2d", "MaxPool2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU"]
    assert list(model.state_dict()) == keys and torch.equal(model(x), expected)
    assert relu_pool_pairs(model) == []  # nothing left to swap: applying it twice changes nothing
    not_a_pair = nn.Sequential(
        nn.ReLU(), nn.Dropout(), nn.MaxPool2d(2), nn.ReLU(), nn.MaxPool2d(2, return_indices=True)
    )
    assert relu_pool_pairs(not_a_pair) == []  # not adjacent; a pool that also returns indices
    assert relu_pool_pairs(build_model("convnet")) == [] and relu_pool_pairs(FastCNN()) == []  # they pool first


def test_candidates_are_the_switches_that_apply(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(decide, "bf16_supported", lambda device: False)
    mlp = candidates(build_model("mlp"), cpu, TrainConfig())
    assert len(mlp) == 2 and mlp[0] == _switches() and mlp[1] == _switches(fused=True)  # no bf16, no feature maps
    assert candidates(build_model("mlp"), cpu, TrainConfig(optimizer="adadelta")) == [_switches()]  # nothing fuses
    monkeypatch.setattr(decide, "bf16_supported", lambda device: True)
    cnn = candidates(build_model("convnet"), cpu, TrainConfig())
    assert len(cnn) == 8 and len({json.dumps(c, sort_keys=True) for c in cnn}) == 8
    assert not any(c["cuda_graph"] for c in cnn)
    assert not any(c["pool_first"] for c in cnn)  # T1 pools before its ReLU already
    keras = candidates(build_model("keras_cnn"), cpu, TrainConfig())  # conv → ReLU → max-pool: pool_first applies
    assert len(keras) == 16 and sum(c["pool_first"] for c in keras) == 8
    on_gpu = candidates(build_model("convnet"), cuda, TrainConfig())  # make_optimizer fuses there already
    assert len(on_gpu) == 8 and any(c["cuda_graph"] for c in on_gpu) and not any(c["fused"] for c in on_gpu)


@pytest.mark.slow
def test_a_switch_that_fails_is_reported_and_left_out(monkeypatch):
    real_prepare = Speed.prepare

    def prepare(self, *args, **kwargs):
        if self.channels_last:
            raise RuntimeError("channels-last kernels missing on this build\nsecond line")
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(Speed, "prepare", prepare)
    decision = decide.decide(build_model("keras_cnn", seed=0), "cpu", SMALL, use_cache=False)
    failed = [t for t in decision.trials if t.switches["channels_last"]]
    assert failed and all(t.error == "channels-last kernels missing on this build" for t in failed)
    assert not decision.chosen["channels_last"]
    assert all(t.ok for t in decision.trials if not t.switches["channels_last"])
    assert "cannot run here: channels-last kernels missing" in decision.table()


@pytest.mark.slow
def test_every_candidate_starts_alike_and_the_choice_trains_within_the_noise():
    model = build_model("keras_cnn", seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    decision = decide.decide(model, "cpu", SMALL, use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))  # trials train copies
    plain = decision.plain
    assert plain.switches == _switches() and plain.ok and 4 <= decision.steps <= 64
    for trial in decision.trials:  # fp32 switches change the order of sums only (other kernels round
        if trial.ok and not trial.switches["amp"]:  # differently: 1.8e-4 seen on CI), far below the seed noise
            assert trial.loss == pytest.approx(plain.loss, rel=1e-3)
            assert abs(trial.loss - plain.loss) < decision.noise / 10
    chosen = next(t for t in decision.trials if t.switches == decision.chosen)
    assert abs(chosen.loss - plain.loss) <= decision.tolerance
    assert chosen is plain or decision.speedup(chosen) >= MARGIN
    assert decision.noise > 0  # another start trains to another loss
    threaded = [t for t in decision.trials if "threads" in t.switches]
    assert [t.switches["threads"] for t in threaded] == thread_counts(torch.get_num_threads())
    if threaded:  # the first choice timed again, and each count trains to its loss: in float32 only the order
        reference = decision.reference  # of some sums may differ; bfloat16 kernels may round differently
        assert reference.ok and {**reference.switches, "threads": 1} == threaded[-1].switches
        close = decision.tolerance if reference.switches["amp"] else 1e-3 * abs(reference.loss)
        assert all(abs(t.loss - reference.loss) <= close for t in threaded)


@pytest.mark.slow
def test_the_decision_is_cached_and_a_damaged_cache_is_measured_again(monkeypatch, tmp_path):
    monkeypatch.setenv(decide.ENV_CACHE, str(tmp_path / "cache"))
    model = build_model("mlp", seed=0)
    first = decide.decide(model, "cpu", SMALL)
    assert not first.cached and cache_path().parent == tmp_path / "cache"
    again = decide.decide(model, "cpu", SMALL)
    assert again.cached and again.chosen == first.chosen and again.trials == first.trials
    assert again.reference == first.reference
    assert Speed.auto(model, "cpu", SMALL) == Speed(**first.chosen)
    assert decide.decide(model, "cpu", SMALL.replace(batch_size=64)).key != first.key  # another recipe, measured
    cache_path().write_text("{ not json")
    measured = decide.decide(model, "cpu", SMALL)
    assert not measured.cached and json.loads(cache_path().read_text())[first.key]["chosen"] == measured.chosen


@pytest.mark.slow  # measures a decision on a cold cache: 7-10 s
def test_measuring_leaves_the_global_random_state_as_it_was(monkeypatch, tmp_path):
    # fit's caller seeds, builds the model, then asks Speed.auto: the numbers drawn next (shuffling,
    # dropout) must not depend on whether the decision was cached or measured just now.
    monkeypatch.setenv(decide.ENV_CACHE, str(tmp_path / "cache"))
    model = build_model("convnet", seed=0)  # has dropout; the noise measurement reinitialises a copy
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    decision = decide.decide(model, "cpu", SMALL)
    assert not decision.cached
    assert torch.equal(torch.rand(4), expected)


def test_the_key_tells_the_layers_apart_not_only_the_class_and_size():
    device = torch.device("cpu")
    pooled_first, pooled_last = FastCNN(), FastCNN(pool_first=False)  # same class, same parameter count
    key = decide.decision_key(pooled_first, device, SMALL)
    assert key == decide.decision_key(FastCNN(), device, SMALL)  # another instance, other weights: same key
    assert key != decide.decision_key(pooled_last, device, SMALL)


@pytest.mark.slow
def test_a_cache_that_cannot_be_written_is_not_an_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(decide.ENV_CACHE, str(blocker / "cache"))  # a folder inside a file: cannot exist
    decision = decide.decide(build_model("mlp", seed=0), "cpu", SMALL)
    assert not decision.cached and blocker.read_text() == ""


def test_describe_and_table_name_the_choice_and_every_candidate():
    fast = Trial(_switches(amp=True, channels_last=True), 0.004, 1.002)
    decision = _decision(PLAIN, fast)
    decision.chosen = _choose(decision)
    assert decision.describe().startswith("amp, channels_last (2.50× the plain step; measured now")
    rows = decision.table().splitlines()
    assert len(rows) == 4 and "no extra switches" in rows[1] and rows[2].endswith("chosen")
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))).trials == decision.trials


# --- fewer threads ---------------------------------------------------------------------


def test_the_thread_counts_tried_are_half_and_one():
    assert thread_counts(1) == [] and thread_counts(2) == [1] and thread_counts(3) == [1]
    assert thread_counts(8) == [4, 1] and thread_counts(16) == [8, 1]


def _with_threads(first: Trial, again: float, *fewer: tuple[int, float, float]) -> Decision:
    """A decision whose first choice is `first`, timed `again` beside (threads, seconds per step, loss) trials."""
    decision = _decision(PLAIN, first)
    decision.chosen = _choose(decision)
    assert decision.chosen == first.switches
    decision.reference = Trial(first.switches, again, first.loss)
    decision.trials += [Trial({**first.switches, "threads": n}, sps, loss) for n, sps, loss in fewer]
    decision.chosen = _choose_threads(decision)
    return decision


def test_fewer_threads_are_kept_only_when_they_beat_the_first_choice_timed_beside_them():
    amp = Trial(_switches(amp=True), 0.004, 1.002)  # 2.5x the plain step
    # the machine slowed down between the rounds: the first choice took 0.005 s beside the thread trials
    decision = _with_threads(amp, 0.005, (4, 0.0048, 1.002), (1, 0.004, 1.003))
    assert decision.chosen == {**amp.switches, "threads": 1}  # 1.25x faster than the first choice beside it
    one, four = decision.trials[-1], decision.trials[-2]
    assert decision.speedup(one) == pytest.approx(2.5 * 0.005 / 0.004)  # scaled by the first choice's time then
    assert decision.verdict(one) == "chosen" and decision.verdict(amp) == "slower than the chosen one"
    assert decision.verdict(four) == "less than 10% faster than on all threads"
    assert decision.describe().startswith("amp, threads=1 (3.12× the plain step")
    assert "beside the first choice, amp, again at 5.00 ms/step" in decision.table()
    back = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert back.reference == decision.reference and back.trials == decision.trials and back.chosen == decision.chosen


def test_fewer_threads_that_do_not_pay_or_train_otherwise_leave_the_first_choice():
    amp = Trial(_switches(amp=True), 0.004, 1.002)
    assert _with_threads(amp, 0.004, (1, 0.004 / (MARGIN - 0.05), 1.002)).chosen == amp.switches  # under the margin
    different = _with_threads(amp, 0.004, (1, 0.002, 1.5))  # twice as fast, but the loss is off by 0.5
    assert different.chosen == amp.switches and different.verdict(different.trials[-1]) == "loss outside the noise"
    failed_again = _with_threads(amp, math.nan, (1, 0.001, 1.002))  # the first choice could not be timed again
    assert failed_again.chosen == amp.switches


def test_a_thread_count_holds_for_the_epoch_only():
    before = torch.get_num_threads()
    seen = []

    def epoch(wrap):
        seen.append(torch.get_num_threads())
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of an epoch
        return 0.0, 0.0, False

    run = on_threads(epoch, 1)
    run(lambda batches: batches)
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(KeyboardInterrupt):
        run(lambda batches: batches)
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_speed_with_a_thread_count_trains_like_without_one():
    usual, one_thread = _trained("mlp", Speed()), _trained("mlp", Speed(threads=1))
    for a, b in zip(usual, one_thread):  # only the order of some sums may differ
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert Speed(threads=1).describe() == "threads=1" and Speed(amp=True, threads=2).describe() == "amp, threads=2"


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2", True])
def test_a_thread_count_that_is_not_a_positive_whole_number_is_refused(threads):
    with pytest.raises(InvalidParameterError, match="threads must be"):
        Speed(threads=threads)
