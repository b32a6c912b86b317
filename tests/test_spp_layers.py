"""Exact-value tests of SpatialPyramidPooling / SpatialPyramidRoIPooling against numpy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.layers import SpatialPyramidPooling, SpatialPyramidRoIPooling
from keras_pyramids.layers.spp import pyramid_length, select_scales

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


def reference_project(lo, hi, stride, size, offset=0.0):
    """Appendix projection of one box edge pair to an inclusive cell range, clipped."""
    lo, hi = (lo - offset) / stride, (hi - offset) / stride
    first = math.floor(lo) + 1
    last = math.ceil(hi) - 1
    if last < first:
        first = last = math.floor((lo + hi) / 2 + 0.5)
    first = min(max(first, 0), size - 1)
    last = min(max(last, 0), size - 1)
    return first, last


def reference_roi(features, boxes, levels, stride, offset=0.0):
    bsz, h, w, _ = features.shape
    out = []
    for b in range(bsz):
        rows = []
        for ymin, xmin, ymax, xmax in boxes[b]:
            t, btm = reference_project(ymin, ymax, stride, h, offset)
            l, r = reference_project(xmin, xmax, stride, w, offset)
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


@pytest.mark.parametrize("levels", [(6, 3, 2, 1), (4, 3, 1)])
def test_roi_gather_matches_reference_on_larger_maps(levels):
    # 21 x 34 cells: tables of up to 8-cell windows; levels dividing 6 come from its bins,
    # 3 does not divide 4 and is pooled directly. Boxes inside, across the border, outside, thin.
    rng = np.random.default_rng(11)
    features = random_map(21, 34, c=2, batch=2, seed=2)
    corners = rng.uniform(-30, 170, size=(2, 12, 2, 2))
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1)
    boxes[0, 0] = [-10.0, -10.0, 200.0, 200.0]  # the whole map
    boxes[0, 1] = [3.0, 0.0, 5.0, 136.0]  # one row tall, the whole width
    boxes[1, 0] = [150.0, -40.0, 190.0, -20.0]  # outside: clipped to the corner cell
    boxes = boxes.astype("float32")
    layer = SpatialPyramidRoIPooling(levels, stride=4, offset=1.5)
    y = np.asarray(layer(features, boxes))
    assert y.shape == (2, 12, pyramid_length(levels, 2))
    np.testing.assert_array_equal(y, reference_roi(features, boxes, levels, 4, offset=1.5))


def test_output_length_is_50_bins_times_channels():
    assert pyramid_length((6, 3, 2, 1), 256) == 12_800  # SPP-net section 4.1: 12,800-d for ZF-5's conv5
    features = np.zeros((1, 5, 7, 256), "float32")
    y = SpatialPyramidRoIPooling((6, 3, 2, 1), stride=16)(features, np.array([[[0, 0, 50, 90]] * 3], "float32"))
    assert y.shape == (1, 3, 12_800)


def test_normalised_boxes_with_image_size_equal_pixel_boxes():
    features = random_map(6, 9, c=3, batch=2, seed=4)
    pixels = np.array([[[0, 0, 48, 72], [10, 30, 30, 70]], [[-8, 40, 20, 80], [12, 12, 13, 13]]], "float32")
    normalised = pixels / np.array([48, 72, 48, 72], "float32")
    by_pixels = SpatialPyramidRoIPooling((3, 2, 1), stride=8, offset=4.0)(features, pixels)
    by_size = SpatialPyramidRoIPooling((3, 2, 1), stride=8, offset=4.0, image_sizes=[(48, 72)])(features, normalised)
    np.testing.assert_array_equal(np.asarray(by_size), np.asarray(by_pixels))


def test_scale_choice_on_hand_worked_boxes():
    sizes = [(100, 100), (200, 200), (400, 400)]  # target 224^2 = 50,176 pixels
    boxes = np.array([
        [0.0, 0.0, 1.0, 1.0],    # 10,000 / 40,000 / 160,000 pixels -> 200 (gap 10,176)
        [0.2, 0.2, 0.7, 0.7],    # 2,500 / 10,000 / 40,000 -> 400
        [0.0, 0.0, 0.25, 1.0],   # non-square, 2,500 / 10,000 / 40,000 -> 400
        [0.0, 0.0, 1.0, 0.5],    # 5,000 / 20,000 / 80,000 -> 400 (gap 29,824 against 30,176)
        [0.5, 0.5, 0.4, 0.9],    # flipped: no pixels -> the smallest scale
    ], "float32")
    np.testing.assert_array_equal(np.asarray(select_scales(boxes, sizes)), [1, 2, 2, 2, 0])
    # A tie (64 and 136 pixels around 10^2 = 100) goes to the earlier scale, in either order.
    whole = np.array([[0.0, 0.0, 1.0, 1.0]], "float32")
    assert np.asarray(select_scales(whole, [(8, 8), (8, 17)], target_size=10)).tolist() == [0]
    assert np.asarray(select_scales(whole, [(8, 17), (8, 8)], target_size=10)).tolist() == [0]


def test_multi_scale_pools_each_box_from_its_scale():
    # The same image at 32 and 64 pixels, stride 4: maps of 8 x 8 and 16 x 16. Target 16^2 = 256 pixels:
    # a quarter-side box is 8 x 8 at 32 and 16 x 16 at 64 -> scale 1; a half-side box is 16 x 16 at 32 -> 0.
    small, large = random_map(8, 8, c=2, batch=2, seed=5), random_map(16, 16, c=2, batch=2, seed=6)
    boxes = np.array([[[0.25, 0.25, 0.5, 0.5], [0.0, 0.5, 0.5, 1.0]],
                      [[0.5, 0.0, 1.0, 0.5], [0.6, 0.1, 0.85, 0.35]]], "float32")
    layer = SpatialPyramidRoIPooling((2, 1), stride=4, image_sizes=[(32, 32), (64, 64)], target_size=16)
    y = np.asarray(layer([small, large], boxes))
    chosen = [[1, 0], [0, 1]]
    for b in range(2):
        for r in range(2):
            size, fmap = ((32, small), (64, large))[chosen[b][r]]
            expected = reference_roi(fmap[b:b + 1], boxes[b:b + 1, r:r + 1] * size, (2, 1), 4)
            np.testing.assert_array_equal(y[b, r], expected[0, 0])
    restored = SpatialPyramidRoIPooling.from_config(layer.get_config())
    assert restored.image_sizes == ((32, 32), (64, 64)) and restored.target_size == 16
    with pytest.raises(ValueError, match="built for 2 feature map"):
        layer(small, boxes)


def test_roi_pooling_compiles_with_xla_and_its_gradient_reaches_the_maxima():
    # Offset 2: cell centres 4 k + 2, so a whole-image box covers every cell.
    layer = SpatialPyramidRoIPooling((2, 1), stride=4, offset=2.0, image_sizes=[(24, 40), (48, 80)])
    maps = [tf.Variable(random_map(6, 10, c=3, batch=2, seed=8)), tf.Variable(random_map(12, 20, c=3, batch=2))]
    boxes = tf.constant(np.array([[[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4]]] * 2, "float32"))

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            pooled = layer(maps, boxes)
            total = tf.reduce_sum(pooled[:, :, -3:])  # the 1 x 1 level: one max per channel
        return pooled, tape.gradient(total, maps)

    pooled, grads = step()
    np.testing.assert_array_equal(pooled.numpy(), layer(maps, boxes).numpy())
    # Both boxes are closest to 224^2 pixels at the larger scale (the whole image: 960 or 3,840 pixels),
    # so the small map gets no gradient; the large one gets 1 at each box's maximum per channel: the
    # whole map's, and that of the small box's region, rows 1..3 and columns 4..7 (floor((4.8 - 2) / 4) + 1
    # .. ceil((14.4 - 2) / 4) - 1 and floor((16 - 2) / 4) + 1 .. ceil((32 - 2) / 4) - 1).
    assert not grads[0].numpy().any()
    big = maps[1].numpy()
    expected = (big == big.max(axis=(1, 2), keepdims=True)).astype("float32")
    region = big[:, 1:4, 4:8]
    expected[:, 1:4, 4:8] += region == region.max(axis=(1, 2), keepdims=True)
    np.testing.assert_array_equal(grads[1].numpy(), expected)
