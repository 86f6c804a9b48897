"""Back-propagation by hand for T2's "BP network" (784-128-64-10, ReLU, LogSoftmax, NLL).

T2 named its network after back-propagation but never showed the backward pass;
this module writes it out with plain tensor operations (no autograd, no ``nn.Module``),
one commented line per step of the chain rule. ``tests/test_backprop.py`` checks it
against autograd on a real `mnist_lab.models.BPNetwork` in float64: the framework
is the reference answer, so there are no input checks here, only the maths.
Notebook 04 derives every line.

Parameters live in a dict ``{"W1", "b1", "W2", "b2", "W3", "b3"}``. Each weight is
stored as ``(in, out)`` so a layer reads ``z = a @ W + b``, the way the maths is
written; ``nn.Linear`` stores the transpose ``(out, in)``, which `params_from_model`
and `load_params_into` take care of. Shapes: ``B`` images in a batch.

    a0 = x                     (B, 784)   the flattened images
    z1 = a0 @ W1 + b1          (B, 128)   a1 = relu(z1)
    z2 = a1 @ W2 + b2          (B, 64)    a2 = relu(z2)
    z3 = a2 @ W3 + b3          (B, 10)    log p = log_softmax(z3)
    L  = -mean_i log p[i, y_i]            (NLLLoss)
"""

from __future__ import annotations

from torch import Tensor, nn

from ..data import NUM_CLASSES
from ..models import IN_FEATURES
from .softmax import log_softmax, nll, one_hot

# (in, out) of each Linear layer of T2's network, and where it sits in BPNetwork.net
LAYER_SIZES = {1: (IN_FEATURES, 128), 2: (128, 64), 3: (64, NUM_CLASSES)}
NET_INDEX = {1: 1, 2: 3, 3: 5}  # layer k is BPNetwork.net[NET_INDEX[k]]
PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")

Params = dict[str, Tensor]


def params_from_model(model: nn.Module) -> Params:
    """Copy a `BPNetwork`'s weights into a parameter dict, each ``W`` transposed to ``(in, out)``.

    The tensors are detached copies: changing them leaves the model alone.
    """
    params: Params = {}
    for k, i in NET_INDEX.items():
        layer = model.net[i]
        params[f"W{k}"] = layer.weight.detach().T.contiguous()  # (out, in) -> (in, out), a copy
        params[f"b{k}"] = layer.bias.detach().clone()  # (out,)
    return params


def load_params_into(model: nn.Module, params: Params) -> nn.Module:
    """Write a parameter dict into a `BPNetwork` (``W`` transposed back to ``(out, in)``); returns the model.

    The model keeps its own dtype and device; the values are copied into it.
    """
    for k, i in NET_INDEX.items():
        layer = model.net[i]
        layer.weight.data.copy_(params[f"W{k}"].T)  # (in, out) -> (out, in)
        layer.bias.data.copy_(params[f"b{k}"])
    return model


def forward(params: Params, X: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The forward pass by hand: images -> log-probabilities ``(B, 10)``, plus what backward needs.

    `X` is ``(B, 1, 28, 28)``, ``(B, 28, 28)`` or ``(B, 784)`` (already normalised; it is
    cast to the parameters' dtype). The cache holds every layer's input ``a`` and
    pre-activation ``z``: back-propagation reuses them instead of recomputing.
    """
    a0 = X.reshape(len(X), IN_FEATURES).to(params["W1"].dtype)  # (B, 784)
    z1 = a0 @ params["W1"] + params["b1"]  # (B, 128)
    a1 = z1.clamp_min(0)  # (B, 128) ReLU
    z2 = a1 @ params["W2"] + params["b2"]  # (B, 64)
    a2 = z2.clamp_min(0)  # (B, 64) ReLU
    z3 = a2 @ params["W3"] + params["b3"]  # (B, 10) logits
    log_probs = log_softmax(z3, dim=1)  # (B, 10) z3 - logsumexp(z3)
    cache = {"a0": a0, "z1": z1, "a1": a1, "z2": z2, "a2": a2, "log_probs": log_probs}
    return log_probs, cache


def loss(log_probs: Tensor, y: Tensor) -> Tensor:
    """T2's loss, ``NLLLoss``: ``-mean_i log p[i, y_i]`` (a 0-d tensor)."""
    return nll(log_probs, y)


def backward(params: Params, cache: dict[str, Tensor], y: Tensor) -> Params:
    """The backward pass by hand: gradients of the mean NLL loss for every parameter.

    `cache` is what `forward` returned with the same `params`; `y` ``(B,)`` the labels.
    Returns ``{"W1": (784, 128), "b1": (128,), ..., "b3": (10,)}``, the same shapes
    as `params`.
    """
    log_probs = cache["log_probs"]
    B = len(log_probs)
    # Output layer: LogSoftmax + NLL together have the simple gradient p - Y.
    Y = one_hot(y, NUM_CLASSES, dtype=log_probs.dtype)  # (B, 10) one-hot labels
    dz3 = (log_probs.exp() - Y) / B  # (B, 10) dL/dz3 = (p - Y)/B, p = exp(log p); /B as L is a batch mean
    dW3 = cache["a2"].T @ dz3  # (64, 10) dL/dW3 = a2ᵀ dz3: z3 = a2 W3 + b3 is linear in W3
    db3 = dz3.sum(0)  # (10,) dL/db3 = Σ_i dz3[i]: b3 is added to every row
    da2 = dz3 @ params["W3"].T  # (B, 64) dL/da2 = dz3 W3ᵀ: how the loss moves with layer 2's output
    # Hidden layer 2: ReLU passes the gradient where z2 > 0 and blocks it elsewhere.
    dz2 = da2 * (cache["z2"] > 0)  # (B, 64) dL/dz2 = da2 ⊙ 1[z2 > 0]
    dW2 = cache["a1"].T @ dz2  # (128, 64) dL/dW2 = a1ᵀ dz2
    db2 = dz2.sum(0)  # (64,) dL/db2 = Σ_i dz2[i]
    da1 = dz2 @ params["W2"].T  # (B, 128) dL/da1 = dz2 W2ᵀ
    # Hidden layer 1: the same two steps again.
    dz1 = da1 * (cache["z1"] > 0)  # (B, 128) dL/dz1 = da1 ⊙ 1[z1 > 0]
    dW1 = cache["a0"].T @ dz1  # (784, 128) dL/dW1 = a0ᵀ dz1, a0 = the input pixels
    db1 = dz1.sum(0)  # (128,) dL/db1 = Σ_i dz1[i]
    # (dL/da0 = dz1 W1ᵀ would be the gradient for the pixels: not needed to train.)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    """One step of plain gradient descent, ``θ ← θ − lr · ∇θ L`` for every parameter.

    Returns new tensors (the inputs are left unchanged), so ``params = sgd_step(params, grads, lr)``.
    """
    return {name: params[name] - lr * grads[name] for name in PARAM_NAMES}


def relative_error(a: Tensor, b: Tensor) -> float:
    """``‖a − b‖ / max(‖a‖, ‖b‖)``: 0 for equal tensors, about 1e-16 for float64 round-off.

    Scale-free, so a gradient of size 1e-3 and one of size 10 are judged alike; 0 when
    both are zero.
    """
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(a.norm().item(), b.norm().item())
    return 0.0 if scale == 0 else (a - b).norm().item() / scale
