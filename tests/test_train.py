import math
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import mnist_lab.train
from mnist_lab.checkpoints import load_checkpoint, save_checkpoint
from mnist_lab.config import TrainConfig
from mnist_lab.data import DeviceLoader
from mnist_lab.devices import get_device, glibc
from mnist_lab.errors import CheckpointError, DeviceUnavailableError, DivergenceWarning, InvalidParameterError
from mnist_lab.models import build_model
from mnist_lab.train import confusion_matrix, evaluate, fit, loss_function, lr_at, predict, train_epoch

QUICK = {"limit": 3000, "test_limit": 1000, "progress": False, "log": None}


@pytest.mark.slow
def test_fit_learns_and_reports_fractions():
    net = build_model("mlp", seed=0)
    history = fit(net, epochs=3, shuffle=True, **QUICK)
    assert history.epochs == 3 and history.stopped is None
    assert history.final_test_acc > 0.88  # chance is 0.10
    assert history.train_loss[-1] < history.train_loss[0]
    for key in ("train_acc", "test_acc"):
        assert all(0 <= v <= 1 for v in getattr(history, key))
    assert history.config["epochs"] == 3 and history.model == "mlp" and history.device == "cpu"


def test_same_seed_same_history():
    runs = [
        fit(build_model("convnet", seed=5), epochs=1, seed=5, limit=512, test_limit=256, progress=False, log=None)
        for _ in range(2)
    ]
    assert runs[0].train_loss == runs[1].train_loss and runs[0].test_acc == runs[1].test_acc


def test_metrics_are_weighted_by_samples_not_batches(test_set):
    net = build_model("mlp", seed=0)
    images, labels = test_set[0][:1000], test_set[1][:1000]
    whole = evaluate(net, DeviceLoader(images, labels, batch_size=1000, shuffle=False))
    # 999 samples in the first batch, 1 in the second: a mean over batches would be far off
    uneven = evaluate(net, DeviceLoader(images, labels, batch_size=999, shuffle=False))
    assert uneven == pytest.approx(whole, rel=1e-5)


def test_checkpoint_round_trip(tmp_path):
    net = build_model("bp_network", seed=0)
    path = save_checkpoint(tmp_path / "bp.pt", net)
    fresh = build_model("bp_network", seed=1)
    load_checkpoint(path, fresh)
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(fresh(x), net(x))


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_resume_reaches_the_same_result_as_one_run(tmp_path, schedule):
    settings = {"epochs": 3, "limit": 640, "test_limit": 256, "progress": False, "log": None, "schedule": schedule}
    straight = fit(build_model("mlp", seed=0), **settings)
    path = tmp_path / "mlp.pt"

    def stop_after_epoch_one(line):  # `fit` logs each epoch after saving its checkpoint: a Ctrl-C there
        if line.startswith("epoch"):
            raise KeyboardInterrupt

    first = fit(build_model("mlp", seed=0), checkpoint=path, **{**settings, "log": stop_after_epoch_one})
    assert first.epochs == 1 and first.stopped == "interrupted"
    resumed = fit(build_model("mlp", seed=0), checkpoint=path, resume=True, **settings)
    assert resumed.epochs == 3 and resumed.epoch == [1, 2, 3]
    assert resumed.test_acc == pytest.approx(straight.test_acc, abs=1e-6)
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-6)
    assert load_checkpoint(path)["history"]["epochs"] == 3


def test_resume_without_a_checkpoint_path_is_refused():
    with pytest.raises(InvalidParameterError, match="checkpoint"):
        fit(build_model("mlp"), epochs=1, resume=True, **QUICK)


def test_onecycle_rises_to_the_peak_then_falls_to_zero():
    config = TrainConfig(lr=0.3, epochs=2, schedule="onecycle")
    rates = [lr_at(step, config, steps_per_epoch=50) for step in range(100)]  # warm-up: 20 steps
    assert rates[0] == pytest.approx(0.3 / 20) and rates[19] == pytest.approx(0.3)
    assert all(a < b for a, b in zip(rates[:20], rates[1:20]))  # up
    assert rates[20] == pytest.approx(0.3)  # the decay starts from the peak
    assert all(a > b for a, b in zip(rates[20:], rates[21:]))  # then down
    assert rates[-1] == pytest.approx(0.3 / 80) and lr_at(100, config, 50) == 0.0
    assert lr_at(7, TrainConfig(lr=0.3), 50) == 0.3  # constant


def test_train_epoch_sets_the_learning_rate_of_every_step(test_set):
    net = build_model("mlp", seed=0)
    config = TrainConfig(lr=0.3, epochs=1, schedule="onecycle")
    optimizer = torch.optim.SGD(net.parameters(), lr=99.0)
    seen = []
    optimizer.register_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[0]["lr"]))
    loader = DeviceLoader(test_set[0][:640], test_set[1][:640], batch_size=64)
    train_epoch(net, loader, optimizer, F.cross_entropy, lr=lambda step: lr_at(step, config, len(loader)))
    assert seen == [lr_at(step, config, 10) for step in range(10)]


def test_checkpoint_of_another_model_names_both(tmp_path):
    path = save_checkpoint(tmp_path / "mlp.pt", build_model("mlp"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, build_model("deep_mlp"))
    assert "'mlp'" in str(info.value) and "'deep_mlp'" in str(info.value)
    assert "state_dict" not in str(info.value)


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path, build_model("mlp"))


@pytest.mark.slow
def test_divergence_stops_at_once_and_keeps_the_good_epochs(tmp_path):
    net = build_model("deep_mlp", seed=0)
    path = tmp_path / "deep_mlp.pt"
    fit(net, epochs=1, checkpoint=path, **QUICK)
    before = load_checkpoint(path)["model_state"]
    with pytest.warns(DivergenceWarning, match="too large for this model: try 10"):
        history = fit(net, epochs=3, lr=100, checkpoint=path, resume=True, **QUICK)
    assert history.stopped == "diverged" and history.epochs == 1
    after = load_checkpoint(path)["model_state"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # last good epoch kept


def test_interrupt_returns_finished_epochs_and_a_usable_checkpoint(tmp_path):
    images, labels = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (256,))
    inner = DeviceLoader(images, labels, batch_size=64)

    class InterruptInEpochTwo:
        def __init__(self):
            self.epochs = 0

        def __iter__(self):
            self.epochs += 1
            for i, batch in enumerate(inner):
                if self.epochs == 2 and i == 2:
                    raise KeyboardInterrupt
                yield batch

    path = tmp_path / "ckpt.pt"
    test = DeviceLoader(images, labels, batch_size=64, shuffle=False)
    history = fit(
        build_model("mlp", seed=0),
        epochs=3,
        train_loader=InterruptInEpochTwo(),
        test_loader=test,
        checkpoint=path,
        progress=False,
        log=None,
    )
    assert history.stopped == "interrupted" and history.epochs == 1
    assert load_checkpoint(path, build_model("mlp"))["history"]["epochs"] == 1
    resumed = fit(
        build_model("mlp", seed=0),
        epochs=3,
        train_loader=inner,
        test_loader=test,
        checkpoint=path,
        resume=True,
        progress=False,
        log=None,
    )
    assert resumed.epochs == 3 and resumed.stopped is None


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 0},
        {"epochs": "ten"},
        {"lr": 0},
        {"lr": -0.1},
        {"lr": math.nan},
        {"lr": math.inf},
        {"batch_size": 0},
        {"limit": 0},
        {"momentum": 1.5},
        {"optimizer": "adamw"},
        {"shuffle": "False"},
        {"epochs": 2.5},
        {"epochs": True},
    ],
)
def test_impossible_settings_fail_before_training(change):
    with pytest.raises(InvalidParameterError):
        TrainConfig(**change)


def test_unknown_setting_name_is_refused():
    with pytest.raises(InvalidParameterError, match="Did you mean 'epochs'"):
        TrainConfig().replace(epoch=3)


def test_devices():
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidParameterError, match="Did you mean 'cpu'"):
        get_device("cpus")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="not available"):
            get_device("cuda")
        with pytest.raises(DeviceUnavailableError):
            fit(build_model("mlp"), epochs=1, device="cuda", **QUICK)


def test_predict_takes_a_lone_image_or_a_batch(test_set, trained_mlp):
    net = trained_mlp
    image = test_set[0][0]  # (28, 28) uint8, no batch dimension
    probs, classes = predict(net, image, k=3)
    assert probs.shape == (1, 3) and classes.shape == (1, 3)
    assert torch.all(probs[0, :-1] >= probs[0, 1:])  # sorted
    batch_probs, batch_classes = predict(net, test_set[0][:5])
    assert torch.equal(batch_classes[0], classes[0])
    assert batch_probs.shape == (5, 3)


def test_confusion_matrix_counts():
    labels = torch.tensor([0, 1, 1, 2])
    predicted = torch.tensor([0, 2, 1, 2])
    m = confusion_matrix(labels, predicted, num_classes=3)
    assert m.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_log_prob_models_train_with_nll(test_set):
    net = build_model("bp_network", seed=0)
    assert loss_function(net) is F.nll_loss
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = fit(net, epochs=3, **QUICK)
    assert history.final_test_acc > 0.5  # lr 0.003 learns slowly; chance is 0.1
    X, y = DeviceLoader(*[t[:1000] for t in test_set], batch_size=1000, shuffle=False, normalize="half").batch(
        torch.arange(1000)
    )
    with torch.no_grad():
        log_probs = net(X)
    # the model outputs log-probabilities (each row's probabilities sum to 1) ...
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(1000))
    # ... and the reported test loss is the NLL of those, not cross-entropy of a softmax on top
    assert history.test_loss[-1] == pytest.approx(F.nll_loss(log_probs, y).item(), rel=1e-4)


FAULTS_SCRIPT = """
import resource, torch
from mnist_lab.devices import keep_freed_memory

def step():  # two 32 MiB tensors, written and freed, as a training step's activations are
    blocks = [torch.ones(2**23) for _ in range(2)]
    del blocks

def page_faults():  # over 5 steps after one (whose memory may be new to the process)
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

before = page_faults()
applied = keep_freed_memory()
# The heap first grows to hold the steps (memory new to the process, at times over a few windows);
# once grown, a window of steps reuses it.
print(before, applied, min(page_faults() for _ in range(4)))
"""


@pytest.mark.slow  # a fresh interpreter: about 3 s
@pytest.mark.skipif(not glibc(), reason="keep_freed_memory changes glibc's malloc only")
def test_keeping_freed_memory_ends_the_page_faults_of_each_step():
    # A fresh interpreter: the setting holds for the whole process and cannot be undone.
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True).stdout
    before, applied, after = out.split()
    assert applied == "True"
    # glibc's default maps blocks this big afresh each time: 16,384 new 4 KiB pages a step
    assert int(before) > 5 * 16_384 * 0.9
    assert int(after) < 1_000  # the same memory is reused


def test_fit_keeps_freed_memory_on_the_cpu(monkeypatch, test_set):
    calls = []
    monkeypatch.setattr(mnist_lab.train, "keep_freed_memory", lambda: calls.append("kept"))
    loader = DeviceLoader(test_set[0][:256], test_set[1][:256], batch_size=64)
    fit(build_model("softmax_regression"), epochs=1, train_loader=loader, test_loader=loader, log=None, progress=False)
    assert calls == ["kept"]
