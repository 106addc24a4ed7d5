import math

import pytest
import torch
from torch import nn

from mnistlab.core.errors import ConfigError
from mnistlab.models import nets

from helpers import SPEEDRUN_NET


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("net, params", [
    (nets.SoftmaxRegression(), 784 * 10 + 10),
    (nets.DNN(), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),
    (nets.CNN(), 206_922),  # the Keras tutorial's model.summary()
    (nets.LeNet5(), 61_706),
])
def test_parameter_counts_and_output_shape(net, params):
    assert count(net) == params
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_cnn_is_the_keras_network():
    convs = [m for m in nets.CNN().modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1))]
    dense = [m for m in nets.CNN().modules() if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(32 * 7 * 7, 128), (128, 10)]


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "gelu"])
def test_pooling_before_a_monotonic_activation_computes_the_same_function(activation):
    torch.manual_seed(0)
    net = nets.CNN(channels=(8, 16), convs_per_block=2, batch_norm=True, activation=activation).eval()
    kinds = [type(m) for m in net.features]
    pool = kinds.index(nn.MaxPool2d)
    act = type(nets.make_activation(activation))
    # GELU dips below zero, so it must stay before the pool; the others run after it
    assert kinds[pool - 1 if activation == "gelu" else pool + 1] is act
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(net.features(x), textbook_features(net, x), atol=1e-5)


def textbook_features(net: nets.CNN, x: torch.Tensor) -> torch.Tensor:
    """The same layers, pooling after each block's last activation."""
    layers = [m for m in net.features if not isinstance(m, nn.MaxPool2d)]
    acts = [i for i, m in enumerate(layers) if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    block_ends = acts[1::2]  # two convolutions per block
    for i, layer in enumerate(layers):
        x = layer(x)
        if i in block_ends:
            x = nn.functional.max_pool2d(x, 2)
    return x


def test_truncated_normal_init_matches_the_tutorial():
    torch.manual_seed(0)
    net = nets.DNN(hidden=(300, 100), init="truncated_normal")
    first = net.layers[1].weight
    std = 2 / math.sqrt(784)
    assert first.abs().max() <= 2 * std + 1e-6
    # a normal truncated at 2 sigma has std 0.8796 sigma
    assert first.std().item() == pytest.approx(0.8796 * std, rel=0.02)
    assert torch.count_nonzero(net.layers[1].bias) == 0


@pytest.mark.parametrize("name, kind", [(k, v) for k, v in nets.ACTIVATIONS.items()])
def test_activations(name, kind):
    net = nets.DNN(hidden=(20,), activation=name)
    assert any(isinstance(m, kind) for m in net.modules())


def test_batch_norm_and_dropout_options():
    dnn = nets.DNN(hidden=(64, 32), batch_norm=True, dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in dnn.modules()) == 2
    assert [m.p for m in dnn.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    cnn = nets.CNN(channels=(8, 16, 32), convs_per_block=2, batch_norm=True, dropout=0.25, dense=64)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == 6
    assert cnn(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # per-block settings: the speedrun's 5x5 first kernel without batch norm, 3x3 with it afterwards
    mixed = nets.CNN(channels=(8, 16, 32), kernel_size=[5, 3, 3], batch_norm=[False, True, True], dense=64)
    convs = [m for m in mixed.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.padding, c.bias is not None) for c in convs] == [
        ((5, 5), (2, 2), True), ((3, 3), (1, 1), False), ((3, 3), (1, 1), False)]
    assert [m.num_features for m in mixed.modules() if isinstance(m, nn.BatchNorm2d)] == [16, 32]
    assert mixed(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # a stride-2 convolution instead of max-pooling: 28 -> 14 -> 7 -> 4 ('same' padding rounds up)
    strided = nets.CNN(channels=(8, 16, 32), convs_per_block=2, pool=["stride", "max", "stride"], dense=64)
    convs = [m for m in strided.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (1, 1), (1, 1), (1, 1), (2, 2)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in strided.modules()) == 1
    assert strided.classifier[1].in_features == 32 * 4 * 4
    shapes = []
    for layer in strided.features:
        layer.register_forward_hook(lambda m, i, o: shapes.append(o.shape[-1]) if isinstance(m, nn.Conv2d) else None)
    assert strided(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert shapes == [28, 14, 14, 14, 7, 4]
    # convolutions per block, one count each: a cheap strided first block, two 3x3 convolutions later
    deeper = nets.CNN(channels=(8, 16, 32), kernel_size=[5, 3, 3], convs_per_block=[1, 2, 2],
                      pool=["stride", "max", "max"], dense=64)
    convs = [m for m in deeper.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (1, 8, (2, 2)), (8, 16, (1, 1)), (16, 16, (1, 1)), (16, 32, (1, 1)), (32, 32, (1, 1))]
    assert deeper(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    lenet = nets.LeNet5(batch_norm=True, dropout=0.1, activation="tanh")
    assert lenet(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_pool_before_norm_normalizes_the_pooled_maps():
    net = nets.CNN(channels=(8, 16, 32), kernel_size=[5, 3, 3], batch_norm=[False, True, True],
                   pool=["stride", "max", "max"], dense=64, pool_before_norm=True)
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU",
                     "Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    sizes = []
    for m in net.features:
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda m, i, o: sizes.append(tuple(i[0].shape[1:])))
    assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert sizes == [(16, 7, 7), (32, 3, 3)]  # a quarter of the values each, not (16, 14, 14), (32, 7, 7)
    # the same parameters as the usual order, and the same function for blocks without batch norm
    usual = nets.CNN(channels=(8, 16, 32), kernel_size=[5, 3, 3], batch_norm=[False, True, True],
                     pool=["stride", "max", "max"], dense=64)
    assert [p.shape for p in net.parameters()] == [p.shape for p in usual.parameters()]
    plain_a, plain_b = nets.CNN(pool_before_norm=True), nets.CNN()
    plain_b.load_state_dict(plain_a.state_dict())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(plain_a(x), plain_b(x))


def test_center_crop_sees_only_the_central_pixels():
    net = nets.CNN(**SPEEDRUN_NET, pool_before_norm=True, center_crop=24).eval()
    sizes = []
    for m in net.features:
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[-1]))
    x = torch.randn(3, 1, 28, 28)
    out = net(x)
    assert sizes == [24, 12, 6]  # and 3x3 maps into the dense layer: no row lost to an odd size
    assert net.classifier[1].in_features == 64 * 3 * 3
    border = x.clone()
    border[..., :2, :] = 9.0
    border[..., -2:, :] = -9.0
    border[..., :, :2] = 5.0
    border[..., :, -2:] = -5.0
    torch.testing.assert_close(net(border), out)  # the 2-pixel border is ignored...
    inner = x.clone()
    inner[..., 2, 2] += 9.0
    inner[..., 25, 25] -= 9.0
    assert not torch.allclose(net(inner), out)  # ...its first row and column inside are not
    # the same parameters as the uncropped network: only the maps shrink
    uncropped = nets.CNN(**SPEEDRUN_NET, pool_before_norm=True)
    assert [p.shape for p in net.parameters()] == [p.shape for p in uncropped.parameters()]


@pytest.mark.parametrize("build, message", [
    (lambda: nets.DNN(activation="swishy"), "unknown activation 'swishy'"),
    (lambda: nets.DNN(dropout=1.0), "dropout must be in \\[0, 1\\)"),
    (lambda: nets.DNN(init="magic"), "unknown init 'magic'"),
    (lambda: nets.DNN(hidden=(0,)), "hidden sizes must be whole numbers > 0, got \\[0\\]"),
    (lambda: nets.DNN(hidden=(300, "abc")), "hidden sizes must be whole numbers > 0, got \\[300, 'abc'\\]"),
    (lambda: nets.CNN(channels=(16, 0)), "channels, dense and convs_per_block must be whole numbers > 0"),
    (lambda: nets.CNN(dense=12.5), "got \\[16, 32\\], 12.5 and 1"),
    (lambda: nets.CNN(kernel_size=4), "kernel_size must be odd"),
    (lambda: nets.CNN(channels=(8, 8, 8, 8, 8)), "1 to 4 blocks"),
    (lambda: nets.CNN(kernel_size=[3, 5, 3]), "kernel_size lists 3 values for 2 blocks"),
    (lambda: nets.CNN(batch_norm=[True]), "batch_norm lists 1 values for 2 blocks"),
    (lambda: nets.CNN(convs_per_block=[1, 2, 2]), "convs_per_block lists 3 values for 2 blocks"),
    (lambda: nets.CNN(convs_per_block=[1, 0]), "got \\[16, 32\\], 128 and \\[1, 0\\]"),
    (lambda: nets.CNN(pool="avg"), "pool must be one of max, stride"),
    (lambda: nets.CNN(center_crop=0), "center_crop must be a side length from 1 to 28 pixels, got 0"),
    (lambda: nets.CNN(center_crop=30), "center_crop must be a side length from 1 to 28 pixels, got 30"),
    (lambda: nets.CNN(pool_before_norm="ture"), "pool_before_norm must be true or false, got 'ture'"),
    (lambda: nets.CNN(batch_norm=[True, "no"]), "batch_norm must be true or false, got 'no'"),
    (lambda: nets.DNN(batch_norm=1), "batch_norm must be true or false, got 1"),
    (lambda: nets.LeNet5(batch_norm="yes"), "batch_norm must be true or false, got 'yes'"),
    (lambda: nets.CNN(center_crop=True), "center_crop must be a side length from 1 to 28 pixels, got True"),
    (lambda: nets.CNN(center_crop=24.5), "center_crop must be a side length from 1 to 28 pixels, got 24.5"),
    (lambda: nets.CNN(channels=(8, 8, 8, 8), center_crop=8), "4 blocks halve a 8-pixel input to nothing"),
])
def test_bad_options(build, message):
    with pytest.raises(ConfigError, match=message):
        build()
