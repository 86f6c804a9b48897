"""The hand-written convolution and pooling of mnist_lab.conv, checked against PyTorch.

PyTorch is the reference answer: `conv2d_naive` must equal ``F.conv2d``, `pool2d_naive`
``F.max_pool2d`` / ``F.avg_pool2d``, and the output-size formula must predict the shape
of every convolution and pooling layer of every model, measured by running it.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from mnist_lab.models import MODELS, build_model, count_parameters
from mnist_lab.scratch import conv


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize(
    ("stride", "padding", "kernel"),
    [(1, 0, (3, 3)), (1, 1, (5, 5)), (2, 2, (3, 3)), (3, 1, (2, 4)), ((1, 2), (2, 0), (3, 2))],
)
def test_conv2d_naive_matches_torch(stride, padding, kernel):
    x = _randn(2, 3, 11, 9)
    weight = _randn(4, 3, *kernel, seed=1)
    bias = _randn(4, seed=2)
    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    assert_close(conv.conv2d_naive(x, weight, bias, stride=stride, padding=padding), expected)
    assert_close(conv.conv2d_naive(x, weight, None, stride, padding), F.conv2d(x, weight, None, stride, padding))


def test_conv2d_naive_matches_a_real_layer_and_its_gradient():
    layer = nn.Conv2d(1, 10, kernel_size=5, padding=1).double()
    x = _randn(3, 1, 28, 28).requires_grad_()
    ours = conv.conv2d_naive(x, layer.weight, layer.bias, padding=1)
    theirs = layer(x)
    assert ours.shape == (3, 10, 26, 26)
    assert_close(ours, theirs)
    # the loop is made of differentiable tensor operations, so autograd agrees too
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.square().sum(), x)
    assert_close(g_ours, g_theirs)


def test_conv2d_naive_is_not_a_flipped_convolution():
    # PyTorch's "convolution" does not flip the kernel; an asymmetric kernel tells the difference
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1.0  # a single bright pixel
    weight = torch.arange(9, dtype=torch.float64).view(1, 1, 3, 3)
    out = conv.conv2d_naive(x, weight, padding=1)
    assert_close(out, F.conv2d(x, weight, padding=1))
    assert out[0, 0, 0, 0].item() == 8.0  # the kernel's last entry lands top-left: it is reversed


@pytest.mark.parametrize(("kind", "reference"), [("max", F.max_pool2d), ("avg", F.avg_pool2d)])
@pytest.mark.parametrize(("kernel", "stride"), [(2, None), (3, 1), (3, 2), ((2, 3), (1, 2))])
def test_pool2d_naive_matches_torch(kind, reference, kernel, stride):
    x = _randn(2, 3, 13, 12)
    expected = reference(x, kernel, stride)
    assert_close(conv.pool2d_naive(x, kernel, stride, kind=kind), expected)


@pytest.mark.parametrize(
    ("w", "f", "p", "s", "expected"),
    [(28, 5, 1, 1, 26), (26, 2, 0, 2, 13), (13, 5, 1, 1, 11), (11, 2, 0, 2, 5), (28, 5, 2, 1, 28), (28, 3, 0, 2, 13)],
)
def test_conv_output_size_formula(w, f, p, s, expected):
    assert conv.conv_output_size(w, f, p, s) == expected
    # and the real layer agrees
    assert nn.Conv2d(1, 1, f, stride=s, padding=p)(torch.zeros(1, 1, w, w)).shape[-1] == expected


def test_conv_output_size_rounds_down_and_knows_dilation():
    assert conv.conv_output_size(28, 3, 0, 2) == 13  # (28 - 3)/2 + 1 = 13.5 -> 13
    assert conv.conv_output_size(28, 3, 0, 1, dilation=2) == 24  # a 3-tap kernel dilated by 2 covers 5
    layer = nn.Conv2d(1, 1, 3, dilation=2)
    assert layer(torch.zeros(1, 1, 28, 28)).shape[-1] == 24


def test_layer_shapes_are_the_real_outputs_of_the_convnet():
    shapes = dict(conv.layer_shapes(build_model("convnet", seed=0), (2, 1, 28, 28)))
    assert shapes["features.0"] == (2, 10, 26, 26)  # conv 5×5 p1
    assert shapes["features.1"] == (2, 10, 13, 13)  # max-pool 2
    assert shapes["features.5"] == (2, 20, 5, 5)  # second max-pool
    assert shapes["features.8"] == (2, 500)  # flatten
    assert shapes["classifier.6"] == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_formula_predicts_every_conv_and_pool_layer_of_every_model(name):
    model = build_model(name, seed=0)
    table = conv.layer_table(model, (2, 1, 28, 28))
    spatial = [row for row in table if row.kind in ("Conv2d", "MaxPool2d", "AvgPool2d")]
    for row in spatial:
        assert row.formula_shape == row.out_shape[1:], row
    for row in table:
        if row.kind not in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            assert row.formula_shape is None
    assert table[-1].out_shape == (2, 10)
    # every parameter sits in exactly one leaf layer, each called once
    assert sum(row.parameters for row in table) == count_parameters(model) == model.PARAMETERS


def test_layer_table_counts_multiply_adds_by_the_formula():
    model = build_model("alexnet", seed=0)
    table = {row.name: row for row in conv.layer_table(model)}
    assert table["features.0"].macs == 64 * 28 * 28 * (1 * 5 * 5)
    assert table["features.3"].macs == 192 * 28 * 28 * (64 * 3 * 3)
    assert table["classifier.1"].macs == 9216 * 4096
    assert table["features.1"].macs == 0  # ReLU: no multiply-adds counted
    assert table["features.12"].out_shape == (1, 256, 6, 6)


def test_layer_table_macs_match_a_grouped_convolution_counted_by_hand():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2, padding=1))
    (row,) = conv.layer_table(model, (1, 4, 6, 6))
    assert row.macs == 8 * 6 * 6 * (2 * 3 * 3)


def test_tracing_leaves_the_model_as_it_was():
    model = build_model("convnet", seed=0)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    conv.layer_table(model)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm running stats untouched
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name", ["convnet", "keras_cnn", "examples_cnn", "cnn5x5"])
def test_receptive_field_formula_matches_autograd(name):
    model = build_model(name, seed=0)
    fields = conv.receptive_fields(model)
    assert fields, "every CNN has convolution and pooling layers"
    for field in fields:
        assert conv.measured_receptive_field(model, field.name) == field.size, field


def test_receptive_fields_of_t1s_convnet_by_hand():
    # conv 5 -> 5; pool 2 (stride 2) -> 5 + 1 = 6, jump 2; conv 5 -> 6 + 4·2 = 14; pool 2 -> 14 + 1·2 = 16, jump 4
    fields = conv.receptive_fields(build_model("convnet"))
    assert [(f.size, f.jump) for f in fields] == [(5, 1), (6, 2), (14, 2), (16, 4)]


def test_measured_receptive_field_sees_a_stride():
    # two 3×3 convolutions with stride 2 then 1: 3, then 3 + 2·2 = 7 (not 5, as without the stride)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3))
    assert [f.size for f in conv.receptive_fields(model)] == [3, 7]
    assert conv.measured_receptive_field(model, "2") == 7
