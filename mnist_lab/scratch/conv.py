"""Convolution and pooling written out by hand, the output-size formula, and layer tables.

`conv2d_naive` and `pool2d_naive` loop over output positions, one window at a time,
so that the arithmetic can be read; they are checked against ``F.conv2d`` and
``F.max_pool2d`` / ``F.avg_pool2d`` in the tests and in notebook 05. They are slow:
use them to learn, ``nn.Conv2d`` to train.

`conv_output_size` is the formula ``W' = (W - F + 2P) / S + 1`` (rounded down, as
PyTorch does). `layer_shapes` and `layer_table` run one dummy batch through a model
with forward hooks and report, for every leaf layer, the real input and output
shapes, the parameters, the multiply-adds, and (for convolutions and poolings)
what the formula predicts, so the formula can be checked against every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data import IMAGE_SHAPE

POOLS = ("max", "avg")
SPATIAL_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)  # the layers the size formula describes


def conv_output_size(w: int, f: int, p: int = 0, s: int = 1, dilation: int = 1) -> int:
    """Output width of a convolution or pooling: ``(W - F + 2P) // S + 1``.

    `w` is the input width (or height), `f` the kernel size, `p` the zero padding on
    each side, `s` the stride. A `dilation` d spreads the kernel over ``d (F - 1) + 1``
    pixels. When ``S`` does not divide ``W - F + 2P`` the last, incomplete window is
    dropped (rounded down), as in PyTorch.
    """
    span = dilation * (f - 1) + 1  # pixels one window covers
    assert w + 2 * p >= span, "the kernel must fit in the padded input"
    return (w - span + 2 * p) // s + 1


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def conv2d_naive(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """A 2-d convolution (PyTorch's, i.e. cross-correlation) with one loop per output position.

    `x` is ``(B, C_in, H, W)``, `weight` ``(C_out, C_in, F_h, F_w)``, `bias` ``(C_out,)``.
    Every output pixel ``(i, j)`` of every output channel ``o`` is the sum over the
    window under the kernel: ``out[b, o, i, j] = bias[o] + Σ_c Σ_u Σ_v
    x_padded[b, c, i S + u, j S + v] · weight[o, c, u, v]``. Returns
    ``(B, C_out, H', W')`` with ``H'``, ``W'`` from `conv_output_size`.
    """
    (s_h, s_w), (p_h, p_w) = _pair(stride), _pair(padding)
    c_out, _, f_h, f_w = weight.shape
    h_out = conv_output_size(x.shape[2], f_h, p_h, s_h)
    w_out = conv_output_size(x.shape[3], f_w, p_w, s_w)
    # zeros around the border: (B, C_in, H + 2P_h, W + 2P_w)
    padded = torch.nn.functional.pad(x, (p_w, p_w, p_h, p_h))
    out = x.new_zeros(x.shape[0], c_out, h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            window = padded[:, :, i * s_h : i * s_h + f_h, j * s_w : j * s_w + f_w]  # (B, C_in, F_h, F_w)
            # multiply the window by each of the C_out kernels and add everything up: (B, C_out)
            out[:, :, i, j] = (window.unsqueeze(1) * weight.unsqueeze(0)).sum(dim=(2, 3, 4))
    if bias is not None:
        out += bias.view(1, -1, 1, 1)  # one bias per output channel, shared by all positions
    return out


def pool2d_naive(
    x: Tensor,
    kernel_size: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    kind: str = "max",
) -> Tensor:
    """Max or average pooling, one loop per output position; each channel is pooled on its own.

    `x` is ``(B, C, H, W)``; the stride defaults to the kernel size (windows that do
    not overlap), as in ``nn.MaxPool2d``. No padding. Returns ``(B, C, H', W')``.
    """
    assert kind in POOLS, kind
    (k_h, k_w) = _pair(kernel_size)
    (s_h, s_w) = _pair(kernel_size if stride is None else stride)
    h_out = conv_output_size(x.shape[2], k_h, 0, s_h)
    w_out = conv_output_size(x.shape[3], k_w, 0, s_w)
    out = x.new_zeros(x.shape[0], x.shape[1], h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            window = x[:, :, i * s_h : i * s_h + k_h, j * s_w : j * s_w + k_w]  # (B, C, K_h, K_w)
            out[:, :, i, j] = window.amax(dim=(2, 3)) if kind == "max" else window.mean(dim=(2, 3))
    return out


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if not list(module.children())]


def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module, tuple, tuple]]:
    """Run one zero batch through `model`; (name, module, input shape, output shape) per leaf call."""
    calls: list[tuple[str, nn.Module, tuple, tuple]] = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            calls.append((name, module, tuple(inputs[0].shape), tuple(output.shape)))

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in _leaves(model)]
    was_training = model.training
    try:
        model.eval()  # BatchNorm must not update its running statistics from a dummy batch
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return calls


def layer_shapes(
    model: nn.Module, input_shape: tuple[int, ...] = (1, *IMAGE_SHAPE)
) -> list[tuple[str, tuple[int, ...]]]:
    """The output shape of every leaf layer, in the order the forward pass calls them.

    Shapes are measured, not computed: one batch of zeros of `input_shape` goes
    through `model` (in eval mode, without gradients) with a forward hook on every
    layer that has no sub-layers. Names are those of ``model.named_modules()``.
    """
    return [(name, out_shape) for name, _, _, out_shape in _trace(model, input_shape)]


@dataclass(frozen=True)
class LayerInfo:
    """One leaf layer of a traced model: what it received, what it produced, what it costs.

    ``formula_shape`` is what ``W' = (W - F + 2P)/S + 1`` predicts for the output's
    ``(C, H', W')``, for convolutions and poolings only (None elsewhere). ``macs`` is
    the multiply-adds per image: ``C_out H' W' · (C_in / groups) F_h F_w`` for a
    convolution, ``in · out`` for a linear layer, 0 for anything else.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    parameters: int
    macs: int
    formula_shape: tuple[int, ...] | None


def _formula_shape(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if not isinstance(module, SPATIAL_LAYERS) or getattr(module, "ceil_mode", False):
        return None  # ceil_mode rounds up: not the formula taught here
    (f_h, f_w), (s_h, s_w), (p_h, p_w) = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
    (d_h, d_w) = _pair(getattr(module, "dilation", 1))
    channels = module.out_channels if isinstance(module, nn.Conv2d) else in_shape[1]
    return (
        channels,
        conv_output_size(in_shape[2], f_h, p_h, s_h, d_h),
        conv_output_size(in_shape[3], f_w, p_w, s_w, d_w),
    )


def _macs(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    per_image_outputs = 1
    for n in out_shape[1:]:
        per_image_outputs *= n
    if isinstance(module, nn.Conv2d):
        f_h, f_w = _pair(module.kernel_size)
        return per_image_outputs * (module.in_channels // module.groups) * f_h * f_w
    if isinstance(module, nn.Linear):
        return per_image_outputs * module.in_features
    return 0


def layer_table(model: nn.Module, input_shape: tuple[int, ...] = (1, *IMAGE_SHAPE)) -> list[LayerInfo]:
    """One `LayerInfo` per leaf-layer call: measured shapes, parameters, MACs, and the formula's shape.

    Parameters and MACs are per image and count every call (a layer used twice costs
    twice). Compare ``info.out_shape[1:]`` with ``info.formula_shape`` to check the
    output-size formula against the real layer.
    """
    return [
        LayerInfo(
            name=name,
            kind=type(module).__name__,
            in_shape=in_shape,
            out_shape=out_shape,
            parameters=sum(p.numel() for p in module.parameters()),
            macs=_macs(module, out_shape),
            formula_shape=_formula_shape(module, in_shape),
        )
        for name, module, in_shape, out_shape in _trace(model, input_shape)
    ]


# --- receptive fields (notebook 05) ------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """How much of the input one output pixel of a layer can see.

    ``size``: the side of the input window (pixels) one output pixel depends on.
    ``jump``: how many input pixels apart two neighbouring output pixels are.
    """

    name: str
    kind: str
    size: int
    jump: int


def receptive_fields(model: nn.Module, input_shape: tuple[int, ...] = (1, *IMAGE_SHAPE)) -> list[ReceptiveField]:
    """The receptive field after every convolution and pooling layer of `model`, in forward order.

    A layer with kernel F and stride S grows the field by ``(F - 1)`` steps of the
    current jump, and multiplies the jump by S:
    ``size = size_before + (F - 1) * jump_before``, ``jump = jump_before * S``,
    starting from ``size = jump = 1`` (one input pixel). Padding moves the window
    but does not change its size; ReLU, BatchNorm and Dropout act pixel by pixel.
    """
    size, jump, fields = 1, 1, []
    for name, module, _, _ in _trace(model, input_shape):
        if isinstance(module, SPATIAL_LAYERS):
            f, s = _pair(module.kernel_size)[0], _pair(module.stride)[0]
            size, jump = size + (f - 1) * jump, jump * s
            fields.append(ReceptiveField(name, type(module).__name__, size, jump))
    return fields


def measured_receptive_field(model: nn.Module, upto: str, input_shape: tuple[int, ...] = (1, *IMAGE_SHAPE)) -> int:
    """The receptive field of layer `upto`, measured with autograd instead of the formula.

    Builds the layers' geometry alone: every convolution and pooling up to `upto`
    becomes a one-channel layer with the same kernel, stride and padding whose
    weights are all 1 (poolings become averages), without activations. Then the
    input pixels that reach the centre output pixel are exactly those with a
    non-zero gradient; returns the side of that square. (With the real weights a
    ReLU or a max-pool can hide part of the window for one particular image.)
    """
    layers: list[nn.Module] = []
    for name, module, _, _ in _trace(model, input_shape):
        if isinstance(module, SPATIAL_LAYERS):
            (f, _), (s, _), (p, _) = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            if isinstance(module, nn.Conv2d):
                shadow = nn.Conv2d(1, 1, f, stride=s, padding=p, bias=False)
                nn.init.ones_(shadow.weight)
            else:
                shadow = nn.AvgPool2d(f, stride=s, padding=p)
            layers.append(shadow)
        if name == upto:
            break
    x = torch.zeros(1, 1, *input_shape[2:], requires_grad=True)
    out = nn.Sequential(*layers)(x)  # (1, 1, H', W')
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()  # input rows that reach the centre pixel
    return int(rows.max() - rows.min() + 1)
