"""The hand-written maths of mnist_lab.scratch, checked against PyTorch (the reference answer).

Inputs are random float64 tensors, including logits in the thousands where a naive
formula overflows; gradients are compared with autograd.
"""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mnist_lab.data import normalize
from mnist_lab.errors import DivergenceWarning
from mnist_lab.scratch import softmax as scratch

SCALES = [1.0, 30.0, 1000.0]  # ordinary logits, logits where exp() is huge, logits where exp() overflows


def _logits(scale: float, n: int = 16, c: int = 10, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=generator, dtype=torch.float64) * scale


def _labels(n: int = 16, c: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", SCALES)
def test_sigmoid_matches_torch_without_overflow(scale):
    z = _logits(scale).flatten()
    z[:2] = torch.tensor([1000.0, -1000.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_close(scratch.sigmoid(z), torch.sigmoid(z))
    assert scratch.sigmoid(torch.tensor(0.0)).item() == 0.5


@pytest.mark.parametrize("scale", SCALES)
def test_softmax_matches_torch(scale):
    z = _logits(scale)
    p = scratch.softmax(z, dim=1)
    assert_close(p, torch.softmax(z, dim=1))
    assert torch.isfinite(p).all()
    assert_close(p.sum(dim=1), torch.ones(len(z), dtype=torch.float64))
    assert_close(scratch.softmax(z.T, dim=0), torch.softmax(z.T, dim=0))  # any dim


def test_naive_softmax_agrees_on_small_logits_and_overflows_on_large():
    small = _logits(1.0)
    assert_close(scratch.naive_softmax(small), torch.softmax(small, dim=1))
    large = torch.tensor([[1000.0, 0.0, -5.0]], dtype=torch.float64)
    assert scratch.naive_softmax(large).isnan().any()  # exp(1000) = inf, inf / inf = nan
    assert_close(scratch.softmax(large), torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("scale", SCALES)
def test_log_softmax_matches_torch_and_is_idempotent(scale):
    z = _logits(scale)
    out = scratch.log_softmax(z, dim=1)
    assert_close(out, torch.log_softmax(z, dim=1))
    assert torch.isfinite(out).all()  # log(softmax) would give -inf here for scale 1000
    assert_close(scratch.log_softmax(out, dim=1), out)


def test_float32_large_logits_keep_full_precision():
    # [1000, 999, 0]: adding the max back to a small log-sum-exp would round away ~3e-5 in float32
    z = torch.tensor([[1000.0, 999.0, 0.0], [-3.0, 2.0, 2.5]])
    assert_close(scratch.softmax(z), torch.softmax(z, dim=1))
    assert_close(scratch.log_softmax(z), torch.log_softmax(z, dim=1))
    assert_close(scratch.cross_entropy(z, torch.tensor([1, 0])), F.cross_entropy(z, torch.tensor([1, 0])))


def test_one_hot_matches_torch():
    y = _labels()
    assert_close(scratch.one_hot(y), F.one_hot(y, 10).float())
    assert scratch.one_hot(y, 12, dtype=torch.float64).shape == (16, 12)


@pytest.mark.parametrize("scale", SCALES)
def test_cross_entropy_and_nll_match_torch(scale):
    z, y = _logits(scale), _labels()
    loss = scratch.cross_entropy(z, y)
    assert torch.isfinite(loss)
    assert_close(loss, F.cross_entropy(z, y))
    assert_close(scratch.nll(torch.log_softmax(z, dim=1), y), F.nll_loss(torch.log_softmax(z, dim=1), y))
    assert_close(scratch.nll(scratch.log_softmax(z), y), loss)


def test_cross_entropy_is_minus_log_of_the_true_class_probability():
    z = torch.tensor([[2.0, 1.0, 0.1]], dtype=torch.float64)
    p = torch.exp(z) / torch.exp(z).sum()
    assert_close(scratch.cross_entropy(z, torch.tensor([1])), -torch.log(p[0, 1]))
    uniform = torch.zeros(4, 10, dtype=torch.float64)
    assert_close(scratch.cross_entropy(uniform, _labels(4)), torch.tensor(math.log(10), dtype=torch.float64))


@pytest.mark.parametrize("scale", SCALES)
def test_gradient_of_cross_entropy_is_p_minus_y(scale):
    z, y = _logits(scale).requires_grad_(), _labels()
    F.cross_entropy(z, y).backward()
    by_hand = (scratch.softmax(z.detach()) - scratch.one_hot(y, dtype=torch.float64)) / len(y)
    assert_close(by_hand, z.grad)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_softmax_regression_grad_matches_autograd(scale):
    generator = torch.Generator().manual_seed(2)
    X = torch.rand(32, 784, generator=generator, dtype=torch.float64)
    W = (torch.randn(784, 10, generator=generator, dtype=torch.float64) * scale).requires_grad_()
    b = torch.randn(10, generator=generator, dtype=torch.float64).requires_grad_()
    y = _labels(32)
    F.cross_entropy(X @ W + b, y).backward()
    dW, db = scratch.softmax_regression_grad(X, W.detach(), b.detach(), y)
    assert_close(dW, W.grad)
    assert_close(db, b.grad)


def test_full_batch_training_equals_autograd_sgd():
    """With one batch per epoch the shuffling cannot matter: each epoch is exactly one SGD step."""
    generator = torch.Generator().manual_seed(3)
    X = torch.rand(50, 20, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (50,), generator=generator)
    W, b, losses = scratch.train_softmax_regression(X, y, lr=0.5, epochs=3, batch_size=50, seed=7, num_classes=4)

    W_ref, b_ref = scratch.init_softmax_regression(20, 4, seed=7, dtype=torch.float64)
    W_ref.requires_grad_()
    b_ref.requires_grad_()
    optimizer = torch.optim.SGD([W_ref, b_ref], lr=0.5)
    ref_losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = F.cross_entropy(X @ W_ref + b_ref, y)
        loss.backward()
        optimizer.step()
        ref_losses.append(loss.item())
    assert_close(W, W_ref.detach())
    assert_close(b, b_ref.detach())
    assert losses == pytest.approx(ref_losses, rel=1e-12)


@pytest.mark.slow
def test_training_on_mnist_learns_and_is_reproducible(train_set, test_set):
    X = normalize(train_set[0][:3000], "unit").reshape(-1, 784)
    y = train_set[1][:3000]
    W, b, losses = scratch.train_softmax_regression(X, y, lr=0.1, epochs=3, batch_size=64, seed=0)
    assert W.shape == (784, 10) and b.shape == (10,) and len(losses) == 3
    assert losses[0] < math.log(10) and losses[-1] < losses[0]  # below the loss of a uniform guess, and falling
    X_test = normalize(test_set[0][:1000], "unit").reshape(-1, 784)
    assert scratch.accuracy(X_test @ W + b, test_set[1][:1000]) > 0.8  # chance is 0.10
    W2, b2, losses2 = scratch.train_softmax_regression(X, y, lr=0.1, epochs=3, batch_size=64, seed=0)
    assert torch.equal(W, W2) and torch.equal(b, b2) and losses == losses2
    W3, _, _ = scratch.train_softmax_regression(X, y, lr=0.1, epochs=1, batch_size=64, seed=1)
    assert not torch.equal(W3, scratch.train_softmax_regression(X, y, lr=0.1, epochs=1, seed=0)[0])


def test_training_warns_and_stops_when_it_diverges():
    X = torch.full((8, 4), 1e30)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    with pytest.warns(DivergenceWarning, match="too large"):
        _, _, losses = scratch.train_softmax_regression(X, y, lr=1e10, epochs=5, batch_size=4, num_classes=4)
    assert len(losses) < 5 and all(math.isfinite(v) for v in losses)


def test_accuracy_is_a_fraction():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert scratch.accuracy(scores, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.75)
