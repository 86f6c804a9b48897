"""The CUDA-graph training step (`mnist_lab.speed.cuda_graph`): refused clearly off CUDA, exact on CUDA.

The CUDA tests run only where a CUDA GPU is present (``pytest tests/test_graphs.py`` on a
GPU machine); CI has none, so there the CPU half checks the refusals and which recipes
`Speed.auto` records.
"""

from __future__ import annotations

import pytest
import torch

from mnist_lab.config import TrainConfig
from mnist_lab.data import DeviceLoader
from mnist_lab.errors import InvalidParameterError
from mnist_lab.models import FastCNN, build_model
from mnist_lab.speed import Speed
from mnist_lab.speed.cuda_graph import GraphedEpochs, graph_problem
from mnist_lab.speed.fast_recipe import train_fast
from mnist_lab.train import fit, loss_function, make_optimizer, schedule, train_epoch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_graphs_are_refused_off_cuda_with_the_reason():
    model = build_model("mlp")
    loader = DeviceLoader.from_mnist("train", batch_size=64, limit=256)
    optimizer = make_optimizer(model, model.RECIPE)
    assert "CUDA GPU" in graph_problem(loader, optimizer, torch.device("cpu"))
    with pytest.raises(InvalidParameterError, match="cuda_graph=False"):
        GraphedEpochs(model, loader, optimizer, loss_function(model))
    with pytest.raises(InvalidParameterError, match="CUDA GPU"):
        fit(model, epochs=1, limit=256, test_limit=100, device="cpu", speed=Speed(cuda_graph=True), progress=False)
    with pytest.raises(InvalidParameterError, match="choose one"):
        Speed(cuda_graph=True, compile=True)


def test_cuda_graph_is_tried_only_on_cuda_and_only_for_fused_optimisers(monkeypatch):
    from mnist_lab.speed import decide

    monkeypatch.setattr(decide, "bf16_supported", lambda device: False)  # (no GPU here to ask)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not any(c["cuda_graph"] for c in decide.candidates(build_model("mlp"), cpu, TrainConfig()))
    assert any(c["cuda_graph"] for c in decide.candidates(build_model("mlp"), cuda, TrainConfig()))  # SGD
    cnn5x5 = build_model("cnn5x5")
    assert any(c["cuda_graph"] for c in decide.candidates(cnn5x5, cuda, cnn5x5.RECIPE))  # Adam
    adadelta = TrainConfig(optimizer="adadelta", lr=1.0)  # no fused kernel to record: the plain loop only
    assert decide.candidates(build_model("mlp"), cuda, adadelta) == [{name: False for name in decide.SWITCHES}]


# --------------------------------------------------------------------------- on a CUDA GPU


def _twin_runs(name: str, limit: int, config: TrainConfig | None = None, amp: bool = False):
    """The same model trained one epoch eagerly and by graph replays, from the same weights and order."""
    results = []
    for graphed in (False, True):
        model = build_model(name, seed=0).cuda()
        config = config or model.RECIPE
        loader = DeviceLoader.from_mnist(
            "train", batch_size=config.batch_size, normalize=config.normalize, device="cuda", limit=limit
        )
        optimizer = make_optimizer(model, config)
        loss_fn = loss_function(model, config.label_smoothing)
        lr = schedule(config, loader)
        torch.manual_seed(1)
        if graphed:
            loss, acc, diverged = GraphedEpochs(model, loader, optimizer, loss_fn, amp, lr).epoch()
        else:
            loss, acc, diverged = train_epoch(model, loader, optimizer, loss_fn, lr, amp=amp)
        results.append((model, loss, acc, diverged))
    return results


@cuda
@pytest.mark.parametrize("name", ["mlp", "cnn5x5", "fast_cnn"])  # SGD; Adam; SGD + Nesterov + one-cycle + BatchNorm
def test_graph_replays_train_exactly_like_the_eager_loop(name):
    config = FastCNN.RECIPE.replace(epochs=1) if name == "fast_cnn" else None
    (eager, loss_a, acc_a, _), (graphed, loss_b, acc_b, diverged) = _twin_runs(name, 1000, config)
    assert not diverged
    assert loss_b == pytest.approx(loss_a, rel=1e-3) and acc_b == pytest.approx(acc_a, abs=0.002)
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


@cuda
@pytest.mark.parametrize("schedule_name", ["constant", "onecycle"])
def test_fit_with_graphs_resumes_to_the_same_result_as_one_run(tmp_path, schedule_name):
    checkpoint = tmp_path / "mlp.pt"
    common = dict(limit=5000, test_limit=1000, device="cuda", progress=False, log=None, schedule=schedule_name)
    common["speed"] = Speed(cuda_graph=True)
    whole = fit(build_model("mlp", seed=0), epochs=3, **common)
    first = fit(build_model("mlp", seed=0), epochs=1, checkpoint=checkpoint, **common)
    resumed = fit(build_model("mlp", seed=0), epochs=3, checkpoint=checkpoint, resume=True, **common)
    assert first.epochs == 1 and resumed.epochs == 3
    assert resumed.test_acc == pytest.approx(whole.test_acc, abs=0.003)  # same weights, order and steps
    assert resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-3)
    assert whole.test_acc[-1] > 0.85  # it learns (3 short epochs on 5,000 images)
    state = torch.load(checkpoint, weights_only=False)
    assert all(isinstance(g["lr"], float) for g in state["optimizer_state"]["param_groups"])


@cuda
def test_the_fast_recipe_records_its_step_on_cuda_and_learns_as_without():
    config = FastCNN.RECIPE.replace(test_limit=1000)  # the whole recipe: 468 steps, a fraction of a second on a GPU
    graphed = train_fast(0, device="cuda", config=config)
    eager = train_fast(0, device="cuda", config=config, speed=Speed(amp=True, channels_last=True))
    assert graphed.settings["cuda_graph"] and not eager.settings["cuda_graph"]
    assert graphed.test_acc == pytest.approx(eager.test_acc, abs=0.01)  # the same training, bf16 rounding apart
    assert graphed.test_acc > 0.9  # speed: `mnist-lab bench --fast`
