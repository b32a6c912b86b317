"""IPG-Net: image pyramid, transformation and fusion modules against numpy, backbone level shapes, .keras."""

import keras
import numpy as np
import pytest

from keras_pyramids.backbones import ipg_net as ipg
from keras_pyramids.backbones.resnet import named_weights, resnet

WIDTH = 0.125  # ResNet stages 32, 64, 128, 256 channels; modules 8 filters


def block_mean(x, k):
    b, h, w, c = x.shape
    return x.reshape(b, h // k, k, w // k, k, c).mean(axis=(2, 4))


def test_image_pyramid_levels_are_block_means_of_the_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 24, 3)).astype(np.float32)
    levels = [np.asarray(level) for level in ipg.ImagePyramid(4)(x)]
    assert [level.shape for level in levels] == [(2, 16, 24, 3), (2, 8, 12, 3), (2, 4, 6, 3), (2, 2, 3, 3)]
    np.testing.assert_array_equal(levels[0], x)
    for i in (1, 2, 3):  # bilinear halving = 2x2 mean, so level i = 2^i x 2^i block mean
        np.testing.assert_allclose(levels[i], block_mean(x, 2**i), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("size", [(64, 64), (97, 130), (33, 50)])
def test_pyramid_and_transformation_sizes_meet_the_resnet_stages(size):
    h, w = size
    images = keras.Input((h, w, 3))
    pyramid = ipg.ImagePyramid(4)(images)
    assert [tuple(level.shape[1:3]) for level in pyramid] == [(-(-h // 2**i), -(-w // 2**i)) for i in range(4)]
    for level, image in enumerate(pyramid):  # level i meets stage i + 1 (key C_{i+2}, stride 2^(i+2))
        f = ipg.IPGTransformationModule(32 * 2**level, 8, name=f"t{level}")(image)
        assert tuple(f.shape[1:]) == (-(-h // 2 ** (level + 2)), -(-w // 2 ** (level + 2)), 32 * 2**level)
    # ...which is the ResNet stage's size (the backbone tests build the fusion, which checks it too).
    stages = resnet(50, (h, w, 3), outputs=("C2", "C5"), width=WIDTH).output
    assert tuple(stages["C2"].shape[1:3]) == (-(-h // 4), -(-w // 4))
    assert tuple(stages["C5"].shape[1:3]) == (-(-h // 32), -(-w // 32))


@pytest.mark.parametrize("sizes", [(5, 8), (8, 5), (3, 7), (4, 4)])
def test_channel_transform_is_linear_interpolation_along_channels(sizes):
    c_in, c_out = sizes
    v = np.random.default_rng(1).normal(size=(6, c_in))
    # PyTorch interpolate(mode="linear", align_corners=False): sample at (j + 0.5) * c_in / c_out - 0.5.
    at = (np.arange(c_out) + 0.5) * c_in / c_out - 0.5
    expected = np.stack([np.interp(at, np.arange(c_in), row) for row in v])
    np.testing.assert_allclose(v @ ipg.channel_interpolation_matrix(c_in, c_out), expected, atol=1e-6)
    if c_in == c_out:
        np.testing.assert_array_equal(ipg.channel_interpolation_matrix(c_in, c_out), np.eye(c_in))


def hand_set_fusion(fusion, c_f=3, c_r=4, seed=0):
    """A fusion module with every weight set to known random values, and its inputs."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(2, 3, 2, c_f)).astype(np.float32)
    r = rng.normal(size=(2, 3, 2, c_r)).astype(np.float32)
    layer = ipg.IPGFusionModule(fusion, name="fusion")
    layer([f, r])
    params = {}
    for sub in layer.leaf_layers():
        values = [rng.normal(size=v.shape).astype(np.float32) for v in sub.get_weights()]
        sub.set_weights(values)
        params[sub.name.replace("fusion_", "")] = values
    return layer, f, r, params


def numpy_fusion(fusion, f, r, p):
    ct = f @ ipg.channel_interpolation_matrix(f.shape[-1], r.shape[-1])

    def linear(x, name):
        kernel, bias = p[name]
        return x @ kernel + bias

    s, m = linear(ct, "w_s"), linear(r, "w_m")
    if fusion == "sum":  # Eq. 2
        return linear(s + m, "w")
    if fusion == "concat":  # Eq. 4
        return linear(np.concatenate([s, m], axis=-1), "w")
    x = s * m + r  # Eq. 3, layer norm over channels
    gamma, beta = p["ln"]
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    return normed * gamma + beta


@pytest.mark.parametrize("fusion", ipg.FUSIONS)
def test_fusion_module_computes_its_equation(fusion):
    layer, f, r, params = hand_set_fusion(fusion)
    expected = numpy_fusion(fusion, f, r, params)
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(np.asarray(layer([f, r])), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fusion", ipg.FUSIONS)
def test_fusion_starts_as_the_stage_output(fusion):
    rng = np.random.default_rng(2)
    f, r = rng.normal(size=(1, 2, 2, 6)).astype(np.float32), rng.normal(size=(1, 2, 2, 6)).astype(np.float32)
    out = np.asarray(ipg.IPGFusionModule(fusion)([f, r]))
    if fusion == "product":
        r = (r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, r, rtol=1e-5, atol=1e-5)


def test_fusion_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="same height and width"):
        ipg.IPGFusionModule()([np.zeros((1, 2, 2, 4), "float32"), np.zeros((1, 3, 2, 4), "float32")])
    with pytest.raises(ValueError, match="channel_transform='none' needs equal"):
        ipg.IPGFusionModule(channel_transform="none")([np.zeros((1, 2, 2, 3), "float32"),
                                                       np.zeros((1, 2, 2, 4), "float32")])
    with pytest.raises(ValueError, match="Unknown IPG fusion 'max'"):
        ipg.IPGFusionModule("max")


# (fusion stages, stages, keep, input size, expected {key: (h, w, channels)}) at width 0.125.
BACKBONES = [
    ((1,), 4, False, (64, 64), {"C2": (16, 16, 32), "C5": (2, 2, 256)}),
    ((2,), 5, False, (97, 130), {"C3": (13, 17, 64), "C6": (2, 3, 256)}),
    ((3,), 6, False, (64, 96), {"C4": (4, 6, 128), "C6": (1, 2, 256), "C7": (1, 1, 256)}),
    ((4,), 7, True, (64, 64), {"C5": (2, 2, 256), "C5b": (2, 2, 256), "C5c": (2, 2, 256), "C5d": (2, 2, 256)}),
    ((2, 3, 4), 7, False, (256, 256), {"C5": (8, 8, 256), "C6": (4, 4, 256), "C7": (2, 2, 256), "C8": (1, 1, 256)}),
]


@pytest.mark.parametrize("stages, num_stages, keep, size, expected", BACKBONES)
def test_backbone_fuses_the_chosen_stages_and_gives_the_level_shapes(stages, num_stages, keep, size, expected):
    model = ipg.ipg_net(50, size + (3,), tuple(expected), fusion_stages=stages, num_stages=num_stages, keep=keep,
                        width=WIDTH)
    assert {key: tuple(v.shape[1:]) for key, v in model.output.items()} == expected
    fused = sorted(int(layer.name[-1]) for layer in model.layers if isinstance(layer, ipg.IPGFusionModule))
    transforms = [layer for layer in model.layers if isinstance(layer, ipg.IPGTransformationModule)]
    assert fused == list(stages) and len(transforms) == len(stages)


def test_guidance_changes_only_the_fused_stages_and_after():
    size = (64, 64, 3)
    keys = ("C2", "C3", "C4", "C5")
    model = ipg.ipg_net(50, size, keys, fusion_stages=(3,), width=WIDTH)
    twin = ipg.ipg_net(50, size, keys, fusion_stages=(), width=WIDTH)
    values = named_weights(twin)
    # The twin is the same ResNet: the IPG model has every twin weight plus the modules'.
    assert set(values) < set(named_weights(model))
    assert all(key.startswith(("ipg_transform_stage3", "ipg_fusion_stage3"))
               for key in set(named_weights(model)) - set(values))
    for key, variable in named_weights(model).items():
        if key in values:
            variable.assign(values[key])
    fusion = model.get_layer("ipg_fusion_stage3")
    fusion.w_s.kernel.assign(np.full(fusion.w_s.kernel.shape, 0.05, "float32"))  # open the guidance
    x = np.random.default_rng(3).uniform(0, 255, (1,) + size).astype(np.float32)
    got, plain = model(x, training=False), twin(x, training=False)
    for key in ("C2", "C3"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(plain[key]), rtol=1e-5, atol=1e-5)
    for key in ("C4", "C5"):
        assert np.abs(np.asarray(got[key]) - np.asarray(plain[key])).max() > 1e-3


def test_keras_round_trip(tmp_path):
    model = ipg.ipg_net(50, (64, 64, 3), ("C3", "C5", "C6"), fusion_stages=(1, 3), fusion="product",
                        num_stages=5, transform_channels=16, width=WIDTH)
    for layer in model.layers:
        if isinstance(layer, ipg.IPGFusionModule):
            layer.w_s.kernel.assign(np.random.default_rng(4).normal(0, 0.05, layer.w_s.kernel.shape))
    x = np.random.default_rng(5).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    before = model(x, training=False)
    path = tmp_path / "ipg.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded(x, training=False)
    for key in before:
        np.testing.assert_array_equal(np.asarray(before[key]), np.asarray(after[key]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(fusion_stages=(5,)), "fusion_stages must be distinct stages among"),
    (dict(fusion_stages=(2, 2)), "fusion_stages must be distinct"),
    (dict(num_stages=3), "num_stages must be an int >= 4"),
    (dict(keep=True), "num_stages=4 has none"),
    (dict(fusion="mean"), "Unknown IPG fusion 'mean'"),
    (dict(extra_stages=1), "ipg_net sets extra_stages itself"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ipg.ipg_net(50, (64, 64, 3), ("C5",), width=WIDTH, **kwargs)
