"""RetinaNet head: parameter counts (detectron2's R50-FPN), initial probability 0.01, anchor order, config."""

import keras
import numpy as np
import pytest

from keras_pyramids.heads.retinanet import RetinaNetHead
from keras_pyramids.pyramids.fpn import FeaturePyramidNetwork


def pyramid_inputs(sizes, depth):
    return [keras.Input((s, s, depth)) for s in sizes]


def test_parameter_count_80_classes():
    conv3x3 = 9 * 256 * 256 + 256
    class_out = 9 * 256 * (9 * 80) + 9 * 80
    box_out = 9 * 256 * (9 * 4) + 9 * 4
    head = RetinaNetHead(num_classes=80)
    head(pyramid_inputs([8, 4, 2, 1, 1], 256))
    assert head.count_params() == 2 * 4 * conv3x3 + class_out + box_out == 6_463_220


def test_fpn_plus_head_is_detectron2_total_minus_resnet50_convs():
    """Issue 9: detectron2's RetinaNet R50-FPN has 37,915,572 non-BN parameters; ResNet-50's conv
    kernels are 23,454,912, so the FPN (P6 from C5) and the head must hold the remaining 14,460,660."""
    inputs = {
        "C3": keras.Input((8, 8, 512)),
        "C4": keras.Input((4, 4, 1024)),
        "C5": keras.Input((2, 2, 2048)),
    }
    fpn = FeaturePyramidNetwork()
    head = RetinaNetHead(num_classes=80)
    head(fpn(inputs))
    assert fpn.count_params() + head.count_params() == 37_915_572 - 23_454_912 == 14_460_660


def test_group_norm_option():
    head = RetinaNetHead(num_classes=3, depth=32, norm="group", num_groups=8)
    head(pyramid_inputs([4, 2], 16))
    # Tower convs lose their bias, each GroupNorm has gamma and beta.
    towers = 2 * ((9 * 16 * 32) + 3 * (9 * 32 * 32) + 4 * 2 * 32)
    outputs = (9 * 32 * 27 + 27) + (9 * 32 * 36 + 36)
    assert head.count_params() == towers + outputs
    with pytest.raises(ValueError, match="norm must be None or one of"):
        RetinaNetHead(num_classes=3, norm="batch")


def test_initialisation_and_initial_probability():
    head = RetinaNetHead(num_classes=5, depth=64)
    x = [keras.random.normal((2, 8, 8, 64), seed=1), keras.random.normal((2, 4, 4, 64), seed=2)]
    out = head(x)
    assert tuple(out["classes"].shape) == (2, 9 * (64 + 16), 5)
    assert tuple(out["boxes"].shape) == (2, 9 * (64 + 16), 4)
    probs = 1.0 / (1.0 + np.exp(-np.asarray(out["classes"])))
    np.testing.assert_allclose(probs.mean(), 0.01, rtol=0.02)
    # Exactly pi for an all-zero input (biases: 0 in the towers, -log(99) at the end).
    zero = head([np.zeros((1, 2, 2, 64), np.float32)])
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-np.asarray(zero["classes"]))), 0.01, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(zero["boxes"]), 0.0)
    for conv in head.class_tower[::2] + head.box_tower[::2] + [head.box_conv, head.class_conv]:
        kernel = np.asarray(conv.kernel)
        np.testing.assert_allclose(kernel.std(), 0.01, rtol=0.1)
        assert abs(kernel.mean()) < 1e-3
    assert not np.any(np.asarray(head.class_tower[0].bias))
    # The two towers are separate parameters with separate random draws.
    assert not np.array_equal(np.asarray(head.class_tower[0].kernel), np.asarray(head.box_tower[0].kernel))


def test_output_order_is_level_y_x_anchor():
    """Channel a * K + k of level l at (y, x) lands at row offset_l + (y * w + x) * A + a."""
    head = RetinaNetHead(num_classes=2, num_anchors=3, depth=4, num_convs=1)
    inputs = pyramid_inputs([4, 2], 4)
    model = keras.Model(inputs, head(inputs))
    data = [np.random.rand(1, 4, 4, 4).astype(np.float32), np.random.rand(1, 2, 2, 4).astype(np.float32)]
    out = model.predict(data, verbose=0)
    level_maps = keras.Model(inputs, [head.predict_level(x, i)[1] for i, x in enumerate(inputs)]).predict(
        data, verbose=0
    )
    y, x, a, k = 1, 0, 2, 1
    np.testing.assert_allclose(out["classes"][0, 16 * 3 + (y * 2 + x) * 3 + a, k], level_maps[1][0, y, x, a * 2 + k])


def test_config_and_keras_round_trip(tmp_path):
    head = RetinaNetHead(num_classes=3, num_anchors=2, depth=8, num_convs=2, norm="group", num_groups=4,
                         class_prior_probability=0.02, name="head")
    inputs = pyramid_inputs([4, 2], 8)
    model = keras.Model(inputs, head(inputs))
    assert RetinaNetHead.from_config(head.get_config()).get_config() == head.get_config()
    data = [np.random.rand(2, 4, 4, 8).astype(np.float32), np.random.rand(2, 2, 2, 8).astype(np.float32)]
    expected = model.predict(data, verbose=0)
    path = tmp_path / "head.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    got = loaded.predict(data, verbose=0)
    for key in ("boxes", "classes"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("head").get_config()["class_prior_probability"] == 0.02


def test_levels_of_different_depth_are_refused():
    with pytest.raises(ValueError, match="same depth on every level"):
        RetinaNetHead(num_classes=2)(pyramid_inputs([4], 8) + pyramid_inputs([2], 16))
