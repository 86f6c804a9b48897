"""The hand-written backward pass of T2's network, checked against autograd (the reference answer)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mnist_lab.data import normalize
from mnist_lab.models import build_model
from mnist_lab.scratch import backprop

BATCH = 64


@pytest.fixture()
def batch(train_set):
    images, labels = train_set
    return normalize(images[:BATCH], "half").double(), labels[:BATCH].clone()  # (64, 1, 28, 28), (64,)


@pytest.fixture()
def model():
    return build_model("bp_network", seed=0).double()


def _autograd_grads(model, X, y) -> dict[str, torch.Tensor]:
    model.zero_grad()
    F.nll_loss(model(X), y).backward()
    grads = {}
    for k, i in backprop.NET_INDEX.items():
        grads[f"W{k}"] = model.net[i].weight.grad.T  # nn.Linear's (out, in) -> our (in, out)
        grads[f"b{k}"] = model.net[i].bias.grad
    return grads


def test_forward_equals_the_model_in_float64(model, batch):
    X, y = batch
    log_probs, cache = backprop.forward(backprop.params_from_model(model), X)
    with torch.no_grad():
        expected = model(X)
    torch.testing.assert_close(log_probs, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(backprop.loss(log_probs, y), F.nll_loss(expected, y), rtol=1e-12, atol=1e-12)
    assert cache["a0"].shape == (BATCH, 784) and cache["z2"].shape == (BATCH, 64)


def test_backward_equals_autograd_per_layer_in_float64(model, batch):
    X, y = batch
    params = backprop.params_from_model(model)
    _, cache = backprop.forward(params, X)
    grads = backprop.backward(params, cache, y)
    expected = _autograd_grads(model, X, y)
    assert set(grads) == set(backprop.PARAM_NAMES)
    for name in backprop.PARAM_NAMES:
        assert grads[name].shape == params[name].shape, name
        assert expected[name].abs().max() > 0, f"{name}: autograd's gradient is zero, the check would be empty"
        error = backprop.relative_error(grads[name], expected[name])
        assert error < 1e-10, f"{name}: relative error {error:.2e}"


def test_backward_respects_the_relu_mask():
    # Weights and inputs chosen so that every unit of hidden layer 1 is negative:
    # ReLU blocks everything, so no gradient may reach W1/b1 (nor W2, whose input is 0).
    model = build_model("bp_network", seed=1).double()
    params = backprop.params_from_model(model)
    params["W1"] = params["W1"].abs()
    params["b1"] = torch.full_like(params["b1"], -1e3)
    X = torch.rand(8, 784, dtype=torch.float64)
    _, cache = backprop.forward(params, X)
    grads = backprop.backward(params, cache, torch.arange(8))
    assert (cache["z1"] < 0).all()
    for name in ("W1", "b1", "W2"):
        assert torch.count_nonzero(grads[name]) == 0, name
    assert torch.count_nonzero(grads["b2"]) > 0  # b2 still moves z2, so it still gets a gradient
    load = backprop.load_params_into(model, params)
    torch.testing.assert_close(
        backprop.backward(params, cache, torch.arange(8)), _autograd_grads(load, X, torch.arange(8))
    )


def test_one_hand_sgd_step_equals_torch_sgd(model, batch):
    X, y = batch
    params = backprop.params_from_model(model)
    _, cache = backprop.forward(params, X)
    stepped = backprop.sgd_step(params, backprop.backward(params, cache, y), lr=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    F.nll_loss(model(X), y).backward()
    optimizer.step()
    after = backprop.params_from_model(model)
    for name in backprop.PARAM_NAMES:
        torch.testing.assert_close(stepped[name], after[name], rtol=1e-12, atol=1e-12)
    # the step made new tensors: the old parameters are untouched
    assert not torch.equal(stepped["W3"], params["W3"])


def test_loss_falls_over_hand_sgd_steps(batch):
    X, y = batch
    params = backprop.params_from_model(build_model("bp_network", seed=0).double())
    losses = []
    for _ in range(20):
        log_probs, cache = backprop.forward(params, X)
        losses.append(backprop.loss(log_probs, y).item())
        params = backprop.sgd_step(params, backprop.backward(params, cache, y), lr=0.05)
    assert losses[0] == pytest.approx(math.log(10), abs=0.1)  # a fresh network guesses uniformly
    # a small enough step on one fixed batch is plain gradient descent: every step lowers the loss
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 0.2


def test_params_round_trip_through_a_model(model, batch):
    X, _ = batch
    params = backprop.params_from_model(model)
    assert params["W1"].shape == (784, 128) and params["W3"].shape == (64, 10)
    torch.testing.assert_close(params["W2"], model.net[3].weight.detach().T, rtol=0, atol=0)
    fresh = build_model("bp_network", seed=5).double()
    with torch.no_grad():
        assert not torch.equal(fresh(X), model(X))
        assert backprop.load_params_into(fresh, params) is fresh
        torch.testing.assert_close(fresh(X), model(X), rtol=0, atol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert backprop.params_from_model(fresh).keys() == params.keys()
    params["W1"].zero_()  # a copy: the model is not changed through it
    assert model.net[1].weight.abs().sum() > 0


def test_load_params_into_float32_model_keeps_its_dtype(model):
    params = backprop.params_from_model(model)  # float64
    model32 = build_model("bp_network", seed=3)
    backprop.load_params_into(model32, params)
    assert model32.net[1].weight.dtype == torch.float32
    torch.testing.assert_close(model32.net[5].bias, params["b3"].float())
