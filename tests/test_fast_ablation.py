"""Notebook 08's additions: the fast recipe's ablation, time to 99 %, the epoch breakdown."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from mnist_lab.errors import InvalidParameterError
from mnist_lab.models import FastCNN
from mnist_lab.speed.bench import native_stderr_silenced, time_breakdown, time_to_accuracy
from mnist_lab.speed.fast_recipe import (
    ABLATIONS,
    AblationResult,
    FastRun,
    ablation_table,
    fast_cnn_pool_last,
    fast_cnn_without_batchnorm,
    run_ablation,
)

FAST_RECIPE = FastCNN.RECIPE


def test_fast_cnn_without_batchnorm_has_none_and_gets_conv_biases():
    model = fast_cnn_without_batchnorm()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.bias is not None and not c.bias.any() for c in convs)
    # 29,178 minus BatchNorm's weight and bias (2 × (16 + 32 + 64)) plus the conv biases (16 + 32 + 64)
    assert sum(p.numel() for p in model.parameters()) == 29_178 - 224 + 112
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_fast_cnn_pools_before_batchnorm_and_the_usual_order_is_the_same_function_in_eval_mode():
    def block(model):
        return [type(m).__name__ for m in model.features][:4]

    assert block(FastCNN()) == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert block(fast_cnn_pool_last()) == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    torch.manual_seed(0)
    first = FastCNN()
    torch.manual_seed(0)
    last = fast_cnn_pool_last()  # the same random draws: only the pooling moved
    for a, b in zip(first.parameters(), last.parameters()):
        assert torch.equal(a, b)
    # With BatchNorm's batch statistics frozen (eval mode) and positive scales, BatchNorm is an increasing
    # map per channel, so max-pooling commutes with it and with ReLU: the two orders compute one function.
    for m in (m for net in (first, last) for m in net.modules()):
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.linspace(-0.5, 0.5, m.num_features))
                m.running_var.copy_(torch.linspace(0.5, 2.0, m.num_features))
                m.weight.copy_(torch.linspace(0.2, 1.5, m.num_features))
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first.eval()(x), last.eval()(x))
    # In training mode BatchNorm normalises with the batch's statistics, taken after pooling in one order and
    # before it in the other: different networks.
    assert not torch.allclose(first.train()(x), last.train()(x))


def test_each_ablation_changes_exactly_one_ingredient():
    fields = {
        "one_cycle": ("schedule", "constant"),
        "label_smoothing": ("label_smoothing", 0.0),
        "large_batch": ("batch_size", 64),
        "nesterov": ("nesterov", False),
        "weight_decay": ("weight_decay", 0.0),
    }
    for name, ablation in ABLATIONS.items():
        variant = FAST_RECIPE.replace(**ablation.changes)  # validated like any recipe
        changed = {k for k, v in variant.to_dict().items() if FAST_RECIPE.to_dict()[k] != v}
        if name in ("batchnorm", "pool_first"):
            model_maker = {"batchnorm": fast_cnn_without_batchnorm, "pool_first": fast_cnn_pool_last}[name]
            assert not changed and ablation.make_model is model_maker
        else:
            field, value = fields[name]
            assert changed == {field} and getattr(variant, field) == value and ablation.make_model is FastCNN


def test_unknown_ablation_is_refused_before_training():
    with pytest.raises(InvalidParameterError, match="batchnorm"):
        run_ablation(["batchnorm", "batchnrom"], [0], device="cpu")


def fake_run(seed, acc, seconds=10.0, diverged=False):
    return FastRun(seed, acc, 0.1, seconds, 0.5, 2, 468, 2 * 59904, "cpu", diverged=diverged)


def test_ablation_table_reports_mean_spread_and_change():
    full = [fake_run(0, 0.992), fake_run(1, 0.994)]
    without = AblationResult("label_smoothing", "no label smoothing", [fake_run(0, 0.990), fake_run(1, 0.988)])
    broken = AblationResult("batchnorm", "no BatchNorm", [fake_run(0, math.nan, diverged=True)])
    table = ablation_table(full, [without, broken])
    lines = table.splitlines()
    assert lines[2].startswith("| full recipe |") and "99.30%" in lines[2] and "99.20%–99.40%" in lines[2]
    assert "98.90%" in lines[3] and "-0.40 pts" in lines[3]
    assert "diverged" in lines[4]
    assert without.summary()["seeds"] == 2 and broken.summary()["diverged"] == 1


def test_time_breakdown_adds_up_to_the_tutorial_epoch():
    parts = time_breakdown(tutorial_epoch=20.0, data_only=10.0, fastest_epoch=8.0)
    assert sum(parts.values()) == pytest.approx(20.0) and list(parts.values())[2] == pytest.approx(2.0)


def test_native_stderr_silenced_swallows_fd2_and_restores_it(capfd):
    with native_stderr_silenced():
        os.write(2, b"noise from C++\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "noise from C++" not in err and "after" in err


@pytest.mark.slow
def test_time_to_accuracy_stops_at_the_target():
    config = FAST_RECIPE.replace(epochs=2, limit=1024, test_limit=500)
    reached = time_to_accuracy("fast", FastCNN(), config, target=0.0, device="cpu")
    assert reached.reached_epoch == 1 and len(reached.test_acc) == 1 and reached.steps == [4]
    assert reached.reached() == (4, reached.seconds[0]) and reached.seconds[0] > 0
    never = time_to_accuracy("fast", FastCNN(), config, target=1.0, device="cpu")
    assert never.reached_epoch is None and never.reached() is None and len(never.test_acc) == 2
    assert never.steps == [4, 8] and never.seconds[1] > never.seconds[0]  # cumulative
    assert never.to_dict()["reached_epoch"] is None


@pytest.mark.slow
def test_run_ablation_trains_each_variant_per_seed():
    config = FAST_RECIPE.replace(epochs=1, limit=1024, test_limit=500)
    lines = []
    results = run_ablation(["batchnorm", "large_batch"], [0, 1], config=config, device="cpu", log=lines.append)
    assert [r.name for r in results] == ["batchnorm", "large_batch"] and len(lines) == 4
    assert all(len(r.runs) == 2 for r in results)
    assert results[1].runs[0].steps == 1024 // 64  # batch 64 instead of 256
    assert results[0].runs[0].steps == 1024 // 256
    assert all(0 <= run.test_acc <= 1 for r in results for run in r.runs if not run.diverged)
