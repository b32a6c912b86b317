"""M2Det factories: pyramid shapes, anchors vs head outputs, Table 3 parameter counts, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_pyramids as kp
from keras_pyramids.ops import anchors
from keras_pyramids.backbones.vgg import CaffePreprocess, subsample_fc_weights, vgg16_reduced
from keras_pyramids.models import m2det

# Small but complete models: VGG at 1/8 width, 2 TUMs of 32 channels.
SMALL = {"num_tums": 2, "tum_channels": 32, "backbone_width": 0.125, "base_channels": (32, 32)}


@pytest.fixture(scope="module")
def small_model():
    """One small 160x160 two-class M2Det shared by the tests below (building costs seconds)."""
    keras.utils.set_random_seed(0)
    return kp.build_model("m2det_vgg320", num_classes=2, image_size=160, **SMALL)


def expected_anchors(sizes):
    return sum(6 * s * s for s in sizes)


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("m2det_vgg320", (40, 20, 10, 5, 3, 2)),
        ("m2det_vgg512", (64, 32, 16, 8, 4, 2)),
        ("m2det_vgg800", (100, 50, 25, 13, 7, 4)),
    ],
)
def test_six_scales_from_stride_8_and_anchor_count(name, sizes):
    model = kp.build_model(name, num_classes=3, **SMALL)
    assert model.feature_shapes == [(s, s) for s in sizes]
    assert model.feature_shapes[0][0] * 8 == model.image_size[0]
    assert model.num_anchors == expected_anchors(sizes)  # 12828 at 320
    assert model.output["boxes"].shape[1] == model.num_anchors == model.output["classes"].shape[1]
    # SSD's softmax over C + 1 classes (the reference's MultiBoxLoss): a background logit first.
    assert model.output["classes"].shape[2] == 3 + 1
    assert model.head.num_anchors == [6] * 6


def test_anchor_ranges_follow_ssd_and_grow_with_size():
    config = m2det.anchor_config_for((320, 320))
    assert config.scales == (0.08, 0.15, 0.33, 0.51, 0.69, 0.87)
    assert anchors.anchors_per_location(config, 6) == [6] * 6
    specs = anchors.box_specs(config, 6)[0]
    # scale-0.08 squares, sqrt(0.08 * 0.15) square, ratios 2, 1/2, 3, 1/3.
    assert sorted(r for _, r in specs) == sorted([1.0, 1.0, 2.0, 0.5, 3.0, 1 / 3])
    np.testing.assert_allclose(specs[-1][0], np.sqrt(0.08 * 0.15))
    # The smallest anchor stays about the same size in pixels: 25.6, 30.7, 32 px.
    assert [m2det.anchor_config_for((s, s)).scales[0] * s for s in (320, 512, 800)] == pytest.approx(
        [25.6, 30.72, 32.0]
    )


def test_factory_defaults_and_options(small_model):
    assert {"m2det_vgg320", "m2det_vgg512", "m2det_vgg800", "m2det_resnet101_320"} <= set(kp.list_models())
    model = small_model
    assert model.image_size == (160, 160)
    pyramid = model.neck.get_config()
    assert (pyramid["num_levels"], pyramid["tum_channels"], pyramid["tum_out_channels"]) == (2, 32, 16)
    assert pyramid["use_sfam"] and not pyramid["share_ffm2"]
    post = model.postprocessor.get_config()
    assert post["nms"] == "soft_linear" and post["score_threshold"] == 0.05
    hard = kp.build_model("m2det_vgg320", image_size=160, postprocess={"nms": "hard"}, **SMALL)
    assert hard.postprocessor.get_config()["nms"] == "hard"
    detections = model.predict(np.zeros((1, 160, 160, 3), np.float32), verbose=0)
    assert detections["boxes"].shape == (1, 100, 4) and detections["num_detections"].dtype == np.int32


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="multiples of 16"):
        kp.build_model("m2det_vgg320", image_size=328, **SMALL)
    with pytest.raises(ValueError, match="at least 144"):
        kp.build_model("m2det_vgg320", image_size=128, **SMALL)
    with pytest.raises(ValueError, match="Unknown M2Det backbone"):
        m2det.build_m2det("mobilenet", 320, **SMALL)
    with pytest.raises(ValueError, match="ImageNet weights"):
        kp.build_model("m2det_vgg320", backbone_weights="imagenet", **SMALL)


def test_resnet101_backbone_endpoints():
    model = kp.build_model("m2det_resnet101_320", num_classes=2, num_tums=2, tum_channels=32)
    endpoints = model.backbone.output
    assert tuple(endpoints["C3"].shape[1:]) == (40, 40, 512)
    assert tuple(endpoints["C4"].shape[1:]) == (20, 20, 1024)
    assert model.feature_shapes == [(s, s) for s in (40, 20, 10, 5, 3, 2)]
    assert model.num_anchors == expected_anchors((40, 20, 10, 5, 3, 2))
    with pytest.raises(ValueError, match="multiples of 32"):
        kp.build_model("m2det_resnet101_320", image_size=336, deep_endpoint="C5", num_tums=1, tum_channels=16)


def test_vgg_reduced_layout_and_params():
    net = vgg16_reduced((320, 320, 3))
    assert tuple(net.output["C3"].shape[1:]) == (40, 40, 512)
    assert tuple(net.output["C4"].shape[1:]) == (20, 20, 1024)
    # VGG-16 convs (14.71M) + fc6 3x3x512x1024 dilated + fc7 1x1x1024x1024.
    assert net.count_params() == 14_714_688 + (9 * 512 * 1024 + 1024) + (1024 * 1024 + 1024)
    assert net.get_layer("fc6").dilation_rate == (6, 6)


def test_fc_subsampling_and_preprocessing_exact():
    h, w, c, n = 7, 7, 2, 8
    fc6 = np.arange(h * w * c * n, dtype=np.float32).reshape(h * w * c, n)
    fc7 = np.arange(n * n, dtype=np.float32).reshape(n, n)
    k6, b6, k7, b7 = subsample_fc_weights(fc6, np.arange(n), fc7, np.arange(n), keep_every=4)
    assert k6.shape == (3, 3, c, 2) and k7.shape == (1, 1, 2, 2)
    # Tap (1, 2) of the 3x3 kernel is tap (3, 6) of the 7x7 fc6; output 1 is output 4.
    np.testing.assert_array_equal(k6[1, 2, 1, 1], fc6.reshape(h, w, c, n)[3, 6, 1, 4])
    np.testing.assert_array_equal(k7[0, 0], [[0, 4], [32, 36]])
    np.testing.assert_array_equal(b6, [0, 4])
    out = np.asarray(CaffePreprocess()(np.array([[[[10.0, 20.0, 30.0]]]], np.float32)))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_table3_params_4x128_within_6_percent():
    (config, ours, paper, ratio), = m2det.table3_report([(4, 128)])
    assert config == "4x128" and paper == 34.2
    assert abs(ratio - 1) < 0.06, (ours, paper)


@pytest.mark.slow
def test_table3_params_all_reachable_rows_within_6_percent():
    rows = m2det.table3_report(m2det.TABLE3_REACHABLE)
    for config, ours, paper, ratio in rows:
        assert abs(ratio - 1) < 0.06, (config, ours, paper)
    # A 512-channel row needs the reference's full-width TUM outputs.
    (config, ours, paper, ratio), = m2det.table3_report([(2, 512)], tum_out_channels=512)
    assert abs(ratio - 1) < 0.06, (config, ours, paper)


def synthetic_batch(model, batch_size=4, seed=0):
    """Images with one bright square each and its targets from the model's assigner."""
    rng = np.random.default_rng(seed)
    size = model.image_size[0]
    images = rng.uniform(0, 60, (batch_size, size, size, 3)).astype(np.float32)
    assigner = model.target_assigner()
    box_targets, class_targets = [], []
    for i in range(batch_size):
        y, x = rng.uniform(0.1, 0.5, 2)
        side = rng.uniform(0.25, 0.4)
        box = np.array([[y, x, y + side, x + side]], np.float32)
        images[i, int(y * size) : int((y + side) * size), int(x * size) : int((x + side) * size)] = 230
        targets = assigner(tf.constant(box), tf.constant([i % model.num_classes], tf.int32))
        box_targets.append(np.asarray(targets["boxes"]))
        class_targets.append(np.asarray(targets["classes"]))
    return images, {"boxes": np.stack(box_targets), "classes": np.stack(class_targets)}


def test_small_m2det_training_lowers_loss(small_model):
    model = small_model
    # Softmax + hard negative mining starts near (1 + 3) * log(C + 1) per positive and
    # falls more slowly than the focal loss at 1e-3.
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    images, targets = synthetic_batch(model)
    # Training-mode losses: after a dozen steps the batch-norm moving statistics
    # are not settled, so an inference-mode evaluate says little yet.
    history = model.fit(images, targets, epochs=10, batch_size=4, verbose=0).history
    # The detection loss (the L2 term on the kernels falls much more slowly).
    losses = np.add(history["box_loss"], history["class_loss"])
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.6 * losses[0], losses
    np.testing.assert_allclose(history["loss"][-1], losses[-1] + history["l2_loss"][-1], rtol=1e-4)


def test_small_m2det_keras_round_trip(small_model, tmp_path):
    model = small_model
    images = np.random.default_rng(1).uniform(0, 255, (1, 160, 160, 3)).astype(np.float32)
    expected = model(images, training=False)
    path = tmp_path / "m2det.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = loaded(images, training=False)
    for key in ("boxes", "classes"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), rtol=1e-4, atol=1e-5)
    assert loaded.postprocessor.get_config()["nms"] == "soft_linear"
    assert loaded.neck.get_config() == model.neck.get_config()
