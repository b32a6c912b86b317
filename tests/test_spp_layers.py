"""Exact-value tests of SpatialPyramidPooling / SpatialPyramidRoIPooling against numpy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.layers import SpatialPyramidPooling, SpatialPyramidRoIPooling

LEVELS = (1, 2, 3, 4, 6)
NON_SQUARE = ((1, 40), (40, 1), (2, 7), (5, 17), (13, 10), (31, 3), (6, 9))


def reference_bins(a, n):
    """Appendix rule, written independently of the layer: bin i = [floor(i a/n), ceil((i+1) a/n))."""
    return [(math.floor(i * a / n), math.ceil((i + 1) * a / n)) for i in range(n)]


def reference_spp(x, levels):
    """[B, H, W, C] -> [B, C * sum(n^2)] by explicit loops (row-major per level)."""
    b, h, w, c = x.shape
    out = []
    for n in levels:
        block = np.empty((b, n, n, c), x.dtype)
        for i, (r0, r1) in enumerate(reference_bins(h, n)):
            for j, (c0, c1) in enumerate(reference_bins(w, n)):
                block[:, i, j, :] = x[:, r0:r1, c0:c1, :].max(axis=(1, 2))
        out.append(block.reshape(b, -1))
    return np.concatenate(out, axis=1)


def reference_project(lo, hi, stride, size):
    """Appendix projection of one box edge pair to an inclusive cell range, clipped."""
    first = math.floor(lo / stride) + 1
    last = math.ceil(hi / stride) - 1
    if last < first:
        first = last = math.floor((lo + hi) / (2 * stride) + 0.5)
    first = min(max(first, 0), size - 1)
    last = min(max(last, 0), size - 1)
    return first, last


def reference_roi(features, boxes, levels, stride):
    bsz, h, w, _ = features.shape
    out = []
    for b in range(bsz):
        rows = []
        for ymin, xmin, ymax, xmax in boxes[b]:
            t, btm = reference_project(ymin, ymax, stride, h)
            l, r = reference_project(xmin, xmax, stride, w)
            rows.append(reference_spp(features[b : b + 1, t : btm + 1, l : r + 1], levels)[0])
        out.append(rows)
    return np.asarray(out)


def random_map(h, w, c=3, batch=2, seed=0):
    # Distinct values so a wrong bin boundary changes the max.
    rng = np.random.default_rng(seed)
    return rng.permutation(batch * h * w * c).reshape(batch, h, w, c).astype("float32")


def test_bin_rule_gives_exactly_n_nonempty_covering_bins():
    for a in range(1, 41):
        for n in LEVELS:
            bins = reference_bins(a, n)
            assert len(bins) == n
            assert all(hi > lo for lo, hi in bins), (a, n)
            assert set().union(*(range(lo, hi) for lo, hi in bins)) == set(range(a))
    # The window/stride rule of the notes would give 9 windows here.
    a, n = 10, 6
    window, stride = math.ceil(a / n), a // n
    assert (a - window) // stride + 1 == 9
    assert len(reference_bins(a, n)) == 6


@pytest.mark.parametrize("a", range(1, 41))
def test_spp_exact_values_square(a):
    x = random_map(a, a, seed=a)
    y = SpatialPyramidPooling(LEVELS)(x)
    assert y.shape == (2, 3 * sum(n * n for n in LEVELS))
    np.testing.assert_array_equal(np.asarray(y), reference_spp(x, LEVELS))


@pytest.mark.parametrize("hw", NON_SQUARE)
def test_spp_exact_values_non_square(hw):
    x = random_map(*hw, c=4, seed=sum(hw))
    y = SpatialPyramidPooling(LEVELS)(x)
    np.testing.assert_array_equal(np.asarray(y), reference_spp(x, LEVELS))


def test_spp_level_order_and_layout():
    # 4x4 map, one channel, value 10*row + col: level 2 bins are 2x2 quadrants.
    x = (10 * np.arange(4)[:, None] + np.arange(4)[None, :]).astype("float32")[None, :, :, None]
    y = np.asarray(SpatialPyramidPooling((1, 2))(x))[0]
    np.testing.assert_array_equal(y, [33, 11, 13, 31, 33])


def test_spp_under_tf_function_with_unknown_spatial_dims():
    layer = SpatialPyramidPooling((6, 3, 2, 1))
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 5])])
    for h, w, batch in ((3, 11, 1), (13, 13, 4), (20, 7, 2)):
        x = random_map(h, w, c=5, batch=batch, seed=h * w)
        y = fn(x)
        assert y.shape == (batch, 5 * 50)
        np.testing.assert_array_equal(y.numpy(), reference_spp(x, (6, 3, 2, 1)))
    concrete = fn.get_concrete_function()
    assert concrete.output_shapes.as_list() == [None, 250]


def test_spp_gradient_reaches_only_bin_maxima():
    x = tf.constant(random_map(5, 7, c=2, batch=1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = SpatialPyramidPooling((1,))(x)
    grad = tape.gradient(y, x).numpy()
    expected = (x.numpy() == x.numpy().max(axis=(1, 2), keepdims=True)).astype("float32")
    np.testing.assert_array_equal(grad, expected)


def test_roi_hand_checked_non_square_boxes():
    # 4 x 6 map, value 10*row + col, so a bin's max is 10*(last row) + (last col).
    fmap = (10 * np.arange(4)[:, None] + np.arange(6)[None, :]).astype("float32")
    fmap = fmap[None, :, :, None]
    boxes = np.array(
        [[
            [-1.0, 0.0, 2.0, 6.0],   # rows 0..1, cols 1..5: 2 tall, 5 wide
            [1.2, 2.2, 1.8, 2.6],    # contains no cell centre -> nearest cell (2, 2)
            [10.0, 10.0, 20.0, 20.0],  # outside the map -> clipped to cell (3, 5)
        ]],
        "float32",
    )
    y = np.asarray(SpatialPyramidRoIPooling((2, 1), stride=1)([fmap, boxes]))
    assert y.shape == (1, 3, 5)
    # Box 0: row bins {0}, {1}; col bins a=5, n=2 -> cols 1..3 and 3..5.
    np.testing.assert_array_equal(y[0, 0], [3, 5, 13, 15, 15])
    np.testing.assert_array_equal(y[0, 1], [22] * 5)
    np.testing.assert_array_equal(y[0, 2], [35] * 5)

    # Stride 2: box rows floor(0.5)+1=1 .. ceil(3.5)-1=3, cols floor(1.5)+1=2 .. ceil(5.5)-1=5.
    tall_wide = np.array([[[1.0, 3.0, 7.0, 11.0]]], "float32")
    y = np.asarray(SpatialPyramidRoIPooling((2, 1), stride=2)(fmap, tall_wide))
    # Rows a=3, n=2 -> 1..2, 2..3; cols a=4, n=2 -> 2..3, 4..5.
    np.testing.assert_array_equal(y[0, 0], [23, 25, 33, 35, 35])


def test_roi_matches_numpy_reference_on_random_boxes():
    rng = np.random.default_rng(3)
    features = random_map(9, 14, c=3, batch=2, seed=7)
    stride = 8
    corners = rng.uniform(-20, 130, size=(2, 6, 2, 2))
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1)
    boxes = boxes[..., [0, 1, 2, 3]].astype("float32")  # [ymin, xmin, ymax, xmax]
    layer = SpatialPyramidRoIPooling((3, 2, 1), stride=stride)
    y = np.asarray(layer(features, boxes))
    assert y.shape == (2, 6, 3 * 14)
    np.testing.assert_array_equal(y, reference_roi(features, boxes, (3, 2, 1), stride))


def test_roi_whole_map_box_equals_spp():
    features = random_map(7, 12, c=4, batch=3, seed=1)
    boxes = np.tile(np.array([[[-1.0, -1.0, 7.0, 12.0]]], "float32"), (3, 2, 1))
    y = np.asarray(SpatialPyramidRoIPooling((6, 3, 2, 1), stride=1)(features, boxes))
    spp = reference_spp(features, (6, 3, 2, 1))
    np.testing.assert_array_equal(y[:, 0], spp)
    np.testing.assert_array_equal(y[:, 1], spp)


def test_roi_under_tf_function_with_unknown_dims():
    layer = SpatialPyramidRoIPooling((2, 1), stride=4)
    fn = tf.function(
        lambda f, b: layer((f, b)),
        input_signature=[tf.TensorSpec([None, None, None, 2]), tf.TensorSpec([None, None, 4])],
    )
    rng = np.random.default_rng(5)
    for h, w, r in ((5, 8, 3), (11, 4, 1)):
        features = random_map(h, w, c=2, batch=2, seed=h)
        lo = rng.uniform(0, 20, size=(2, r, 2))
        boxes = np.concatenate([lo, lo + rng.uniform(0, 25, size=(2, r, 2))], -1).astype("float32")
        y = fn(features, boxes).numpy()
        np.testing.assert_array_equal(y, reference_roi(features, boxes, (2, 1), 4))


def test_roi_with_no_boxes():
    features = random_map(5, 6, c=3, batch=2)
    empty = np.zeros((2, 0, 4), "float32")
    layer = SpatialPyramidRoIPooling((2, 1), stride=1)
    assert layer(features, empty).shape == (2, 0, 15)
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3]),
                                             tf.TensorSpec([None, None, 4])])
    assert fn(features, empty).shape == (2, 0, 15)


def test_save_load_round_trip_with_both_layers(tmp_path):
    images = keras.Input((None, None, 3), name="images")
    boxes = keras.Input((None, 4), name="boxes")
    features = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(images)
    pooled = SpatialPyramidPooling((3, 1), name="spp")(features)
    regions = SpatialPyramidRoIPooling((2, 1), stride=2, offset=0.5, name="roi")(features, boxes)
    model = keras.Model([images, boxes], [pooled, regions])
    path = tmp_path / "spp.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert loaded.get_layer("spp").levels == (3, 1)
    roi = loaded.get_layer("roi")
    assert (roi.levels, roi.stride, roi.offset) == ((2, 1), 2, 0.5)
    x = np.random.default_rng(0).uniform(0, 255, (2, 17, 23, 3)).astype("float32")
    b = np.array([[[0, 0, 16, 22], [3, 9, 8, 12]]] * 2, "float32")
    for before, after in zip(model.predict([x, b], verbose=0), loaded.predict([x, b], verbose=0)):
        assert before.shape[-1] == 4 * (10 if before.ndim == 2 else 5)
        np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("levels, message", [((), "empty"), ((3, 0), "positive int"),
                                             ((2.0,), "positive int"), (5, "sequence")])
def test_bad_levels(levels, message):
    with pytest.raises(ValueError, match=message):
        SpatialPyramidPooling(levels)
    with pytest.raises(ValueError, match=message):
        SpatialPyramidRoIPooling(levels)


def test_bad_feature_map_rank():
    with pytest.raises(ValueError, match="4-D feature map"):
        SpatialPyramidPooling()(np.zeros((2, 5, 5), "float32"))
    with pytest.raises(ValueError, match="4-D feature map"):
        SpatialPyramidPooling()(keras.Input((None, None, None, 3)))
    with pytest.raises(ValueError, match="4-D feature map"):
        SpatialPyramidRoIPooling()(np.zeros((5, 5, 3), "float32"), np.zeros((1, 2, 4), "float32"))


@pytest.mark.parametrize("shape", [(1, 2, 3), (2, 4), (1, 2, 4, 1)])
def test_malformed_boxes(shape):
    with pytest.raises(ValueError, match=r"boxes must have shape \[batch, num_boxes, 4\]"):
        SpatialPyramidRoIPooling()(np.zeros((1, 5, 5, 3), "float32"), np.zeros(shape, "float32"))


def test_roi_needs_features_and_boxes():
    with pytest.raises(ValueError, match="expects \\(features, boxes\\)"):
        SpatialPyramidRoIPooling()(np.zeros((1, 5, 5, 3), "float32"))
    with pytest.raises(ValueError, match="different batch sizes"):
        SpatialPyramidRoIPooling()(np.zeros((2, 5, 5, 3), "float32"), np.zeros((3, 1, 4), "float32"))
    with pytest.raises(ValueError, match="stride"):
        SpatialPyramidRoIPooling(stride=0)
