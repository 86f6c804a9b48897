"""`mnist-lab bench`, the training ladder, and the fast recipe.

Never a timing: only that each piece runs, computes what it claims, and writes a
well-formed report.
"""

import json
import math
import multiprocessing
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mnist_lab.cli import BENCH_QUICK, FAST_QUICK, main
from mnist_lab.config import TrainConfig
from mnist_lab.devices import bf16_supported
from mnist_lab.errors import InvalidParameterError
from mnist_lab.models import FastCNN, build_model, count_parameters, model_class
from mnist_lab.speed import Speed, bench
from mnist_lab.speed.bench import LADDER, BenchSettings, make_trainer, time_epochs
from mnist_lab.speed.fast_recipe import train_fast
from mnist_lab.train import fit, loss_function

FAST_RECIPE = FastCNN.RECIPE


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_quick_bench_writes_a_well_formed_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert _files(out) == ["bench.json", "bench.md"]  # and no temporary file left behind
    report = json.loads((out / "bench.json").read_text())
    assert report["kind"] == "bench" and report["device_type"] == "cpu"
    assert report["torch"] == torch.__version__ and report["threads"] == torch.get_num_threads()
    assert report["command"] == f"mnist-lab bench --quick --out {out}"
    settings = report["settings"]
    assert settings["models"] == BENCH_QUICK["models"]
    assert settings["epochs_trained"] == max(1 + settings["repeats"], settings["accuracy_epochs"])
    for result in report["results"]:
        for side in ("tutorial", "mnist_lab"):
            s = result[side]
            assert len(s["seconds"]) == settings["repeats"]
            assert 0 <= s["test_acc"] <= 1 and not s["diverged"]
        assert result["config"]["batch_size"] == model_class(result["model"]).RECIPE.batch_size
        assert result["config"]["limit"] == BENCH_QUICK["limit"]
        assert result["model"] in printed
    # mlp trains without shuffling: both loops see the same batches from the same
    # weights, so they must reach the same accuracy -- to one test image in fp32; where
    # Speed.auto chose bfloat16, its rounding may move a few of the 500 test digits.
    mlp = next(r for r in report["results"] if r["model"] == "mlp")
    assert mlp["tutorial"]["test_acc"] > 0.5  # it learned something in 2 epochs of 1,024 images
    tolerance = 0.01 if mlp["speed"]["amp"] else 0.002
    assert mlp["tutorial"]["test_acc"] == pytest.approx(mlp["mnist_lab"]["test_acc"], abs=tolerance)
    table = (out / "bench.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == settings["models"]
    assert all(row.count("|") == 10 for row in rows)
    assert report["device"] in table and report["command"] in table


@pytest.mark.slow
def test_quick_fast_recipe_reports_every_seed(tmp_path, capsys):
    out = tmp_path / "fast"
    assert main(["bench", "--fast", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert _files(out) == ["fast.json", "fast.md"]
    report = json.loads((out / "fast.json").read_text())
    assert [run["seed"] for run in report["runs"]] == [0, 1]
    limit = FAST_QUICK["limit"]
    for run in report["runs"]:
        assert 0 <= run["test_acc"] <= 1 and not run["diverged"]  # 16 steps: too few to judge learning
        assert run["steps"] == limit // FAST_RECIPE.batch_size  # one epoch, last partial batch dropped
        assert Speed(**run["settings"]) == Speed.auto(FastCNN(), "cpu")  # the one decision, as fit would use it
        assert f"seed {run['seed']:2d}: test acc" in printed
    summary = report["summary"]
    assert summary["seeds"] == 2
    assert summary["mean_test_acc"] == pytest.approx(sum(r["test_acc"] for r in report["runs"]) / 2)
    assert "| **mean** |" in (out / "fast.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "lenet5"], "Unknown model 'lenet5'"),
        (["--models", "mlp", "--repeats", "0"], "repeats must be at least 1"),
        (["--models", "mlp", "--batch-size", "0"], "batch_size must be at least 1"),
        (["--models", "mlp", "--limit", "10"], "smaller than one batch"),
        (["--models", "mlp", "--accuracy-epochs", "0"], "accuracy_epochs must be at least 1"),
        (["--models", "mlp", "--seeds", "3"], "belong to --fast"),
        (["--fast", "--seeds", "0"], "seeds must be at least 1"),
        (["--fast", "--models", "mlp"], "do not apply to --fast"),
        (["--fast", "--compile", "fastest"], "Unknown compile mode 'fastest'"),
        (["--models", "mlp", "--device", "tpu"], "Unknown device 'tpu'"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(tmp_path, capsys, monkeypatch, args, message):
    out = tmp_path / "out"
    monkeypatch.setattr(Speed, "auto", classmethod(lambda cls, *a, **k: pytest.fail("Speed.auto measured first")))
    assert main(["bench", *args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "s/epoch" not in captured.out
    assert not (out / "bench.json").exists() and not (out / "fast.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "--models", "mlp", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "not available on this machine" in capsys.readouterr().err


@pytest.mark.slow
def test_ladder_steps_compute_the_same_training():
    # mlp's recipe does not shuffle, so every rung sees the same batches in the same
    # order from the same weights: only the speed may differ, never the numbers.
    weights = {}
    for step in ("tutorial", "tensors", "device", "no_sync", "fused", "tuned"):
        trainer = make_trainer(step, "mlp", "cpu", limit=640)
        loss, acc, diverged = trainer.epoch()
        assert math.isfinite(loss) and 0 <= acc <= 1 and not diverged and trainer.samples == 640
        weights[step] = [p.detach().clone() for p in trainer.model.parameters()]
    tuned_bf16 = make_trainer("tuned", "mlp", "cpu", limit=640).step.amp  # Speed.auto may choose bf16 here
    for step, params in weights.items():
        for got, want in zip(params, weights["tutorial"]):
            if step == "tuned" and tuned_bf16:  # bf16 rounding: about 1 % of each tensor after 10 steps
                assert (got - want).norm() < 0.03 * want.norm(), "bf16 trained differently"
            else:
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"step {step!r} trained differently")


@pytest.mark.slow
def test_interleaved_sides_train_as_each_would_alone():
    # The bench trains (a) and (b) epoch by epoch in turn. keras_cnn has dropout and both
    # sides shuffle, so had they shared one random generator, each would draw numbers
    # meant for the other and end with other weights.
    settings = BenchSettings(("keras_cnn",), device="cpu", repeats=1, limit=512, test_limit=500, accuracy_epochs=3)
    config = model_class("keras_cnn").RECIPE.replace(epochs=settings.epochs, limit=512, seed=3)
    test = bench.mnist_loader("test", config.replace(test_limit=500), torch.device("cpu"))
    tutorial, lab = bench._both_sides("keras_cnn", config, settings, torch.device("cpu"), test, Speed())
    assert len(tutorial.seconds) == len(lab.seconds) == 1

    alone = make_trainer("tutorial", "keras_cnn", "cpu", config, limit=512)
    for _ in range(settings.epochs):
        alone.epoch()
    assert tutorial.test_acc == bench.evaluate(alone.model, test)[1]
    bench.set_seed(config.seed)
    history = fit(
        build_model("keras_cnn", seed=config.seed), config, test_loader=test, device="cpu", log=None, progress=False
    )
    assert lab.test_acc == history.test_acc[-1]


@pytest.mark.slow
def test_an_interrupted_bench_stops_and_leaves_no_process_behind(monkeypatch):
    # Ctrl-C in fit's epoch: fit returns the finished epochs; the bench must stop there
    # (not train the tutorial's remaining epochs) and end the tutorial loop's process.
    settings = BenchSettings(("mlp",), device="cpu", repeats=1, limit=256, test_limit=100, accuracy_epochs=2)
    config = model_class("mlp").RECIPE.replace(epochs=settings.epochs, limit=256)
    test = bench.mnist_loader("test", config.replace(test_limit=100), torch.device("cpu"))

    def interrupted_fit(model, config, *, log, **kwargs):
        log("epoch 1")  # the tutorial loop's epoch 1 runs in its process
        return SimpleNamespace(stopped="interrupted")

    monkeypatch.setattr(bench, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        bench._both_sides("mlp", config, settings, torch.device("cpu"), test, Speed())
    assert multiprocessing.active_children() == []


UNGUARDED_SCRIPT = """
import torch
from mnist_lab.speed import Speed, bench
from mnist_lab.errors import MnistLabError

settings = bench.BenchSettings(("mlp",), device="cpu", repeats=1, limit=256, test_limit=100, accuracy_epochs=2)
config = bench.model_class("mlp").RECIPE.replace(epochs=2, limit=256)
test = bench.mnist_loader("test", config.replace(test_limit=100), torch.device("cpu"))
try:  # no `if __name__ == "__main__":` guard: the tutorial loop's process imports this script again
    bench._both_sides("mlp", config, settings, torch.device("cpu"), test, Speed())
except MnistLabError as exc:
    print("MnistLabError:", exc)
"""


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_what_to_add(tmp_path):
    script = tmp_path / "my_bench.py"
    script.write_text(UNGUARDED_SCRIPT)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert "MnistLabError: The tutorial's loop stopped without a word" in run.stdout
    assert 'if __name__ == "__main__":' in run.stdout
    assert run.returncode == 0  # the error came back to the script, which caught it


@pytest.mark.slow
def test_every_ladder_step_runs_on_a_cnn():
    # The compile rung is left to the next test: compiling for real takes minutes on a CPU.
    # The cuda_graph rung needs a GPU (tests/test_graphs.py covers it there).
    for step in [s.name for s in LADDER if not s.compile and not s.cuda_graph] + ["tuned"]:
        trainer = make_trainer(step, "convnet", "cpu", limit=128)
        timing = time_epochs(trainer, repeats=2, warmup=0)
        assert len(timing.seconds) == 2 and timing.samples == 128
        if trainer.step.channels_last:
            assert trainer.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_ladder_skips_what_cannot_help_here():
    steps, skipped = bench.ladder_for(build_model("deep_mlp"), "cpu")
    names = [s.name for s in steps]
    assert names[:5] == ["tutorial", "tensors", "device", "no_sync", "fused"] and "channels_last" in skipped
    assert steps[-1].fused and not steps[-1].channels_last  # each rung carries the earlier changes
    if not bf16_supported("cpu"):
        assert "bf16" in skipped and not any(s.amp for s in steps)


def test_unknown_step_is_refused():
    with pytest.raises(InvalidParameterError, match="Unknown step 'warp'"):
        make_trainer("warp", "mlp")


def test_bench_settings_validate():
    with pytest.raises(InvalidParameterError, match="No model"):
        BenchSettings(models=())
    settings = BenchSettings(models=("mlp",), repeats=2, accuracy_epochs=6)
    assert settings.epochs == 6


def test_fast_cnn_matches_its_declared_size_and_shapes():
    net = FastCNN()
    assert count_parameters(net) == FastCNN.PARAMETERS
    assert net(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert FAST_RECIPE.schedule == "onecycle" and FAST_RECIPE.drop_last
    assert build_model("fast_cnn").RECIPE is FAST_RECIPE  # registered like every model


@pytest.mark.slow
def test_warm_up_leaves_no_trace():
    # The untimed warm-up trains a few steps; the weights, BatchNorm statistics and
    # shuffling are restored after it, so the timed run is the run without it.
    config = FAST_RECIPE.replace(epochs=1, limit=1024, test_limit=500)
    cold = train_fast(3, device="cpu", config=config, warmup_steps=0)
    warm = train_fast(3, device="cpu", config=config, warmup_steps=2)
    assert warm.test_loss == pytest.approx(cold.test_loss, rel=1e-5)
    assert warm.test_acc == cold.test_acc and warm.steps == cold.steps == 1024 // config.batch_size


@pytest.mark.slow  # a short fast-recipe run, 4 s
def test_the_warm_up_runs_on_the_thread_count_it_warms_up_for(monkeypatch):
    before, set_to = torch.get_num_threads(), []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (set_to.append(n), real(n)))
    config = FAST_RECIPE.replace(epochs=1, limit=512, test_limit=200)
    train_fast(0, device="cpu", config=config, warmup_steps=2, speed=Speed(amp=False, threads=1))
    assert set_to == [1, before, 1, before]  # the warm-up's steps, then the timed epoch's; put back after each
    assert torch.get_num_threads() == before


def test_label_smoothing_matches_its_formula():
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    s = 0.1
    target = torch.full((8, 10), s / 10).scatter_(1, y[:, None], 1 - s + s / 10)
    expected = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(loss_function(build_model("mlp"), s)(logits, y), expected)
    # a model that outputs log-probabilities gets the same smoothed loss
    torch.testing.assert_close(loss_function(build_model("bp_network"), s)(F.log_softmax(logits, 1), y), expected)
    assert loss_function(build_model("bp_network")) is F.nll_loss


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nesterov": True}, "nesterov=True needs"),
        ({"label_smoothing": 1.0}, "label_smoothing must be below 1"),
        ({"schedule": "cosine"}, "Unknown schedule 'cosine'"),
    ],
)
def test_new_recipe_fields_are_validated(changes, message):
    with pytest.raises(InvalidParameterError, match=message):
        TrainConfig(**changes)


def test_fit_takes_the_fast_switches():
    history = fit(
        FastCNN(),
        FAST_RECIPE.replace(epochs=1, limit=1024, test_limit=500),
        device="cpu",
        speed=Speed(channels_last=True),
        progress=False,
        log=None,
    )
    assert history.epochs == 1 and history.config["schedule"] == "onecycle" and 0 <= history.final_test_acc <= 1
    with pytest.raises(InvalidParameterError, match="Unknown compile mode"):
        Speed(compile="turbo")
