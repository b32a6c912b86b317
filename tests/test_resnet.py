"""In-house ResNet-50/101: keras.applications weight copy, re-wiring, freezing, names, saving, errors."""

import keras
import numpy as np
import pytest

from keras_pyramids.backbones import level_stride
from keras_pyramids.backbones import resnet as resnet_lib
from keras_pyramids.backbones.vgg import CaffePreprocess

SIZE = 64


@resnet_lib.register_conv3x3("test_separable")
def separable_conv3x3(filters, kernel_size, strides, dilation_rate, name):
    """A stand-in for POD's scale-learning convolution: another layer type with other weights."""
    return keras.layers.SeparableConv2D(
        filters, kernel_size, strides=strides, dilation_rate=dilation_rate, padding="same", use_bias=False, name=name
    )


def images(batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype(np.float32)


def kernel_count(model):
    return sum(int(np.prod(v.shape)) for k, v in resnet_lib.named_weights(model).items() if k.endswith("/kernel"))


def randomise_statistics_and_biases(model, seed=0):
    """Random BN statistics/affine and conv biases, so that folding the biases matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, variance.shape),
            ])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.5, bias.shape)])


def test_keras_applications_resnet50_copy_gives_the_same_stage5_output():
    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    randomise_statistics_and_biases(reference)
    ours = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C5",))
    report = resnet_lib.load_keras_applications_weights(ours, reference)
    assert report.complete and not report.unused
    # 53 convolutions (1 stem + 16 blocks x 3 + 4 projections), each bias folded into its BN.
    assert len(report.folded) == 53 and len(report.copied) == 53 + 53 * 4
    x = images()
    expected = np.asarray(reference(CaffePreprocess()(x), training=False))
    got = np.asarray(ours(x, training=False)["C5"])
    assert got.shape == expected.shape == (2, 2, 2, 2048)
    assert np.abs(expected).max() > 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # The biases were really needed: without folding the outputs differ.
    plain = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C5",))
    resnet_lib._copy_values(
        {k: np.asarray(v) for k, v in resnet_lib.named_weights(reference).items() if not k.endswith("/bias")}, plain
    )
    assert np.abs(np.asarray(plain(x, training=False)["C5"]) - expected).max() > 1e-2 * np.abs(expected).max()


def test_resnet50_conv_kernels_match_detectron2_count_and_default_shapes():
    model = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C2", "C3", "C4", "C5"))
    # detectron2's R50 stem + res2..res5 convolution weights.
    assert kernel_count(model) == 23_454_912
    assert {k: tuple(v.shape[1:]) for k, v in model.output.items()} == {
        "C2": (16, 16, 256), "C3": (8, 8, 512), "C4": (4, 4, 1024), "C5": (2, 2, 2048),
    }
    assert list(model.output) == ["C2", "C3", "C4", "C5"]
    assert all(SIZE // v.shape[1] == level_stride(k) for k, v in model.output.items())
    # Bias-free convolutions, Caffe layout: stride in the first 1x1.
    block = model.get_layer("conv3").blocks[0]
    assert block.conv1.strides == (2, 2) and block.conv2.strides == (1, 1) and not block.conv1.use_bias


def test_resnet101_shapes_counts_and_copy_from_keras_applications():
    model = resnet_lib.resnet101((SIZE, SIZE, 3), outputs=("C3", "C4", "C5"))
    # R50 + 17 more conv4 blocks of 1x1 (1024->256), 3x3 (256), 1x1 (256->1024).
    assert kernel_count(model) == 23_454_912 + 17 * (2 * 1024 * 256 + 9 * 256 * 256) == 42_394_816
    assert len(model.get_layer("conv4").blocks) == 23
    assert tuple(model.output["C5"].shape[1:]) == (2, 2, 2048)
    reference = keras.applications.ResNet101(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    assert kernel_count(model) == sum(int(np.prod(w.shape)) for w in reference.weights if w.name == "kernel")
    report = resnet_lib.load_keras_applications_weights(model, reference)
    assert report.complete and not report.unused and len(report.folded) == 104
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("conv4").blocks[22].conv3.kernel),
        np.asarray(reference.get_layer("conv4_block23_3_conv").kernel),
    )


def test_imagenet_weights_come_from_keras_applications_and_a_path_loads(monkeypatch, tmp_path):
    """The ``weights="imagenet"`` wiring, offline: keras.applications is asked for its ImageNet model."""
    keras.utils.set_random_seed(2)
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    randomise_statistics_and_biases(reference, seed=2)
    asked = []

    def fake_resnet50(include_top, weights):
        asked.append((include_top, weights))
        return reference

    monkeypatch.setattr(keras.applications, "ResNet50", fake_resnet50)
    model = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C3",), weights="imagenet")
    assert asked == [(False, "imagenet")]
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("conv3").blocks[3].bn3.moving_mean),
        np.asarray(reference.get_layer("conv3_block4_3_bn").moving_mean)
        - np.asarray(reference.get_layer("conv3_block4_3_conv").bias),
    )
    with pytest.warns(UserWarning, match="did not cover 8 weights: \\['conv3_block1_2_conv/depthwise_kernel'"):
        resnet_lib.resnet50(
            (SIZE, SIZE, 3), outputs=("C3",), weights="imagenet", conv3x3=("conv", "test_separable", "conv", "conv")
        )
    path = tmp_path / "r50.weights.h5"
    model.save_weights(path)
    again = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C3",), weights=str(path))
    x = images(1)
    np.testing.assert_allclose(
        np.asarray(again(x, training=False)["C3"]), np.asarray(model(x, training=False)["C3"]), rtol=1e-6, atol=1e-6
    )


def test_only_the_stages_up_to_the_deepest_key_are_built():
    model = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C3",))
    assert [layer.name for layer in model.layers] == ["images", "caffe_preprocess", "conv1", "conv2", "conv3"]


def test_dilated_stage_keeps_the_size():
    model = resnet_lib.resnet50(
        (SIZE, SIZE, 3), outputs=("C4", "C4b"), strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)
    )
    assert tuple(model.output["C4"].shape[1:]) == (4, 4, 1024)
    assert tuple(model.output["C4b"].shape[1:]) == (4, 4, 2048)  # conv5_x kept at stride 16
    assert all(SIZE // v.shape[1] == level_stride(k) for k, v in model.output.items())
    assert all(block.conv2.dilation_rate == (2, 2) for block in model.get_layer("conv5").blocks)
    assert model.get_layer("conv4").blocks[0].conv2.dilation_rate == (1, 1)
    out = model(images(1), training=False)
    assert out["C4b"].shape == (1, 4, 4, 2048)


def test_extra_stages_shapes_and_blocks():
    model = resnet_lib.resnet50(
        (SIZE, SIZE, 3),
        outputs=("C5", "C6", "C6b"),
        extra_stages=(resnet_lib.IPG_EXTRA_STAGE, {"filters": 256, "stride": 1, "dilation": 2}),
    )
    assert tuple(model.output["C6"].shape[1:]) == (1, 1, 2048)  # stride 64, IPG-Net: 2 blocks
    assert tuple(model.output["C6b"].shape[1:]) == (1, 1, 1024)  # conv7 keeps stride 64, DetNet-style
    conv6, conv7 = model.get_layer("conv6"), model.get_layer("conv7")
    assert len(conv6.blocks) == len(conv7.blocks) == 2
    assert conv6.blocks[0].projection and not conv6.blocks[1].projection
    # conv6: projection 2048->2048, 1x1 2048->512, 3x3 512, 1x1 512->2048, then an identity block.
    conv6_kernels = sum(int(np.prod(w.shape)) for w in conv6.weights if w.name == "kernel")
    assert conv6_kernels == 2048 * 2048 + 2 * (2048 * 512 + 9 * 512 * 512 + 512 * 2048)
    assert resnet_lib.resnet50((96, 96, 3), outputs=("C6",), extra_stages=1).output["C6"].shape[1:3] == (2, 2)


def test_conv3x3_factory_swaps_the_layer_in_the_chosen_stages_only():
    model = resnet_lib.resnet50(
        (SIZE, SIZE, 3), outputs=("C5",), conv3x3=("conv", "conv", "test_separable", "test_separable"),
        stride_in_1x1=False,
    )
    for stage, expected in (("conv2", keras.layers.Conv2D), ("conv3", keras.layers.Conv2D),
                            ("conv4", keras.layers.SeparableConv2D), ("conv5", keras.layers.SeparableConv2D)):
        for block in model.get_layer(stage).blocks:
            assert type(block.conv2) is expected, (stage, block.conv2)
            assert block.conv2.name == f"{block.name}_2_conv"
    # v1.5: the stride sits in the first block's 3x3, which the factory receives.
    assert model.get_layer("conv4").blocks[0].conv2.strides == (2, 2)
    assert model.get_layer("conv4").blocks[0].conv1.strides == (1, 1)
    assert tuple(model.output["C5"].shape[1:]) == (2, 2, 2048)


def test_freeze_at_and_frozen_batch_norm():
    model = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C2", "C3"), freeze_at=2)
    assert not model.get_layer("conv1").trainable_weights and not model.get_layer("conv2").trainable_weights
    assert model.get_layer("conv3").trainable_weights
    x = images()
    # Frozen stages normalise with the moving statistics even when training.
    np.testing.assert_allclose(
        np.asarray(model(x, training=True)["C2"]), np.asarray(model(x, training=False)["C2"]), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(np.asarray(model(x, training=True)["C3"]), np.asarray(model(x, training=False)["C3"]))

    frozen = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C3",), frozen_batch_norm=True)
    bn = frozen.get_layer("conv3").blocks[0].bn2
    assert isinstance(bn, resnet_lib.FrozenBatchNormalization)
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 0.3, np.float32))
    before = [np.asarray(v) for v in frozen.non_trainable_weights]
    np.testing.assert_allclose(
        np.asarray(frozen(x, training=True)["C3"]), np.asarray(frozen(x, training=False)["C3"]), rtol=1e-5, atol=1e-5
    )
    for old, new in zip(before, frozen.non_trainable_weights):
        np.testing.assert_array_equal(old, np.asarray(new))
    frozen.trainable = True  # unfreezing the model leaves frozen batch norms frozen
    names = {w.name for w in frozen.trainable_weights}
    assert names == {"kernel"}
    assert len(frozen.trainable_weights) == 1 + (3 * 3 + 1) + (4 * 3 + 1)  # stem, conv2, conv3 kernels


def test_names_are_stable_across_rebuilds_and_weights_move_by_name():
    keras.utils.set_random_seed(1)
    source = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C4", "C5"))
    target = resnet_lib.resnet50(
        (SIZE, SIZE, 3), outputs=("C4", "C4b"), strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), freeze_at=1
    )
    assert list(resnet_lib.named_weights(source)) == list(resnet_lib.named_weights(target))
    report = resnet_lib.copy_weights(source, target)
    assert report.complete and not report.unused and len(report.copied) == 265
    x = images(1)
    np.testing.assert_allclose(
        np.asarray(target(x, training=False)["C4"]), np.asarray(source(x, training=False)["C4"]), rtol=1e-5, atol=1e-5
    )
    # With another 3x3 in conv5 only those layers fail to match, and are reported.
    swapped = resnet_lib.resnet50(
        (SIZE, SIZE, 3), outputs=("C6",), conv3x3=("conv",) * 3 + ("test_separable", "conv"), extra_stages=1
    )
    report = resnet_lib.copy_weights(source, swapped)
    assert sorted(report.unused) == sorted(f"conv5_block{i}_2_conv/kernel" for i in (1, 2, 3))
    missing_layers = {key.split("/")[0] for key in report.missing}
    assert {n for n in missing_layers if not n.startswith("conv6")} == {f"conv5_block{i}_2_conv" for i in (1, 2, 3)}
    assert any(n.startswith("conv6") for n in missing_layers) and not report.mismatched


def test_keras_round_trip_with_a_registered_conv3x3(tmp_path):
    model = resnet_lib.resnet50(
        (SIZE, SIZE, 3), outputs=("C2", "C3"), conv3x3=("conv", "test_separable", "conv", "conv"),
        dilations=(1, 2, 1, 1), freeze_at=1, frozen_batch_norm=True,
    )
    x = images(1)
    expected = model(x, training=False)
    path = tmp_path / "resnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = loaded(x, training=False)
    for key in ("C2", "C3"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), rtol=1e-5, atol=1e-5)
    block = loaded.get_layer("conv3").blocks[0]
    assert isinstance(block.conv2, keras.layers.SeparableConv2D) and block.conv2.dilation_rate == (2, 2)
    assert isinstance(block.bn1, resnet_lib.FrozenBatchNormalization)
    assert not loaded.get_layer("conv1").trainable_weights


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 34}, "Unknown ResNet depth 34"),
        ({"outputs": ("P3",)}, r"Unknown ResNet output key\(s\) \['P3'\]"),
        ({"outputs": ("C1",)}, r"Unknown ResNet output key\(s\) \['C1'\]"),
        ({"outputs": ("C6",)}, "stages give C2, C3, C4, C5 .*add extra_stages"),
        ({"outputs": ("C7",), "extra_stages": 1}, "stages give C2, C3, C4, C5, C6 "),
        ({"outputs": ("C5",), "strides": (1, 2, 2, 1), "dilations": (1, 1, 1, 2)}, "stages give C2, C3, C4, C4b "),
        ({"outputs": "C5"}, "non-empty sequence"),
        ({"conv3x3": "nope"}, "Unknown conv3x3 'nope'"),
        ({"conv3x3": ("conv", "conv")}, "one value per stage"),
        ({"strides": (1, 2, 2)}, "strides needs one value per stage"),
        ({"dilations": (1, 1, 1, 0)}, "positive integer"),
        ({"strides": (1, 2, 2, 2), "dilations": (1, 1, 1, 2), "stride_in_1x1": False}, "both stride 2 and dilation 2"),
        ({"extra_stages": ({"width": 3},)}, "unknown keys"),
        ({"freeze_at": 6}, "freeze_at must be an int in 0..5"),
        ({"input_shape": (64, 64)}, r"input_shape \(H, W, 3\)"),
        ({"weights": "imagenet", "stride_in_1x1": False}, "stride_in_1x1=True"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    kwargs = dict({"depth": 50, "input_shape": (SIZE, SIZE, 3)}, **kwargs)
    with pytest.raises(ValueError, match=message):
        resnet_lib.resnet(**kwargs)


def test_conv3x3_registry_refuses_a_second_factory_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        resnet_lib.register_conv3x3("conv")(separable_conv3x3)
    assert {"conv", "test_separable"} <= set(resnet_lib.conv3x3_names())


def test_width_scales_every_stage():
    model = resnet_lib.resnet50((SIZE, SIZE, 3), outputs=("C2", "C5"), width=0.25)
    assert model.output["C2"].shape[-1] == 64 and model.output["C5"].shape[-1] == 512
    assert model.get_layer("conv1").get_config()["filters"] == 16
    with pytest.raises(ValueError, match="width must be a positive number"):
        resnet_lib.resnet50((SIZE, SIZE, 3), width=0)
    with pytest.raises(ValueError, match="ImageNet weights exist only for width 1.0"):
        resnet_lib.resnet50((SIZE, SIZE, 3), width=0.5, weights="imagenet")
