"""RoIAlign against a plain-loop numpy reference of the torchvision / detectron2 kernel."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops.roi_align import RoIAlign, assign_levels, roi_align


def bilinear(feature, y, x):
    """One sample of the reference kernel: zero beyond one cell outside, clamped inside."""
    height, width = feature.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feature.shape[-1])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[y_low, x_low] + hy * lx * feature[y_low, x_high]
            + ly * hx * feature[y_high, x_low] + ly * lx * feature[y_high, x_high])


def reference_box(feature, box_pixels, stride, out, ratio, aligned):
    """RoIAlign of one box ``[y0, x0, y1, x1]`` (pixels) on one ``[H, W, C]`` map, loop by loop."""
    offset = 0.5 if aligned else 0.0
    y0, x0, y1, x1 = (v / stride - offset for v in box_pixels)
    roi_h, roi_w = y1 - y0, x1 - x0
    if not aligned:
        roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
    bin_h, bin_w = roi_h / out, roi_w / out
    result = np.zeros((out, out, feature.shape[-1]))
    for ph in range(out):
        for pw in range(out):
            total = np.zeros(feature.shape[-1])
            for iy in range(ratio):
                y = y0 + ph * bin_h + (iy + 0.5) * bin_h / ratio
                for ix in range(ratio):
                    x = x0 + pw * bin_w + (ix + 0.5) * bin_w / ratio
                    total += bilinear(feature, y, x)
            result[ph, pw] = total / (ratio * ratio)
    return result


def reference(maps, boxes, image_size, strides, out, ratio, aligned):
    """[B, R, out, out, C]; multi-level boxes pick their map with FPN equation 1 written out here."""
    image_h, image_w = image_size
    levels = [int(math.log2(s)) for s in strides]
    result = np.zeros(boxes.shape[:2] + (out, out, maps[0].shape[-1]))
    for b in range(boxes.shape[0]):
        for r in range(boxes.shape[1]):
            y0, x0, y1, x1 = boxes[b, r] * [image_h, image_w, image_h, image_w]
            index = 0
            if len(maps) > 1:
                size = math.sqrt(max(y1 - y0, 0.0) * max(x1 - x0, 0.0))
                level = math.floor(4 + math.log2(size / 224 + 1e-8))
                index = min(max(level, levels[0]), levels[-1]) - levels[0]
            result[b, r] = reference_box(maps[index][b], (y0, x0, y1, x1), strides[index], out, ratio, aligned)
    return result


def random_maps(shapes, channels=3, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, h, w, channels)).astype(np.float32) for h, w in shapes]


# Normalised boxes for an 80 x 112 image (a 5 x 7 map at stride 16): inside and non-square,
# tall, crossing the top-left corner, crossing the bottom-right border by less and by more
# than one cell (samples past it are zero), flush with the border, sub-cell, degenerate.
BOXES = np.array([
    [[0.10, 0.20, 0.55, 0.90], [0.05, 0.40, 0.95, 0.55], [-0.15, -0.10, 0.30, 0.25],
     [0.60, 0.70, 1.15, 1.08], [0.0, 0.0, 1.0, 1.0], [0.41, 0.33, 0.43, 0.36]],
    [[0.70, 0.05, 1.40, 0.60], [0.0, 0.80, 0.20, 1.0], [0.25, 0.25, 0.75, 0.75],
     [0.5, 0.5, 0.5, 0.5], [-0.3, 0.1, 0.2, 0.5], [0.3, 0.95, 0.9, 1.3]],
], np.float32)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("out,ratio", [(2, 2), (3, 1), (2, 3)])
def test_single_level_equals_reference(aligned, out, ratio):
    (feature,) = random_maps([(5, 7)])
    got = np.asarray(roi_align(feature, BOXES, (80, 112), 16, out, ratio, aligned))
    want = reference([feature], BOXES, (80, 112), [16], out, ratio, aligned)
    assert got.shape == (2, 6, out, out, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The boxes that leave the map by more than one cell really do get zero samples.
    assert np.any(want[1, 0] == 0.0) and np.any(want[1, 0] != 0.0)


def test_hand_worked_values():
    # Map value = 10 * row + column; a box covering cells rows 1-2, columns 0-1 exactly
    # (pixels [16, 0, 48, 32] at stride 16). Aligned, the box is [0.5, -0.5, 2.5, 1.5] in
    # cell coordinates, and one sample per bin of a 2 x 2 output lands on cell centres
    # (rows 1, 2; columns 0, 1): exactly the cell values.
    feature = (10 * np.arange(5)[:, None] + np.arange(7)[None, :]).astype(np.float32)[None, :, :, None]
    box = np.array([[[16 / 80, 0.0, 48 / 80, 32 / 112]]], np.float32)
    got = np.asarray(roi_align(feature, box, (80, 112), 16, output_size=2, sampling_ratio=1))[0, 0, :, :, 0]
    np.testing.assert_allclose(got, [[10, 11], [20, 21]], atol=1e-5)
    # Two samples per side sit a quarter cell either side of those centres: rows average
    # back to the centre value, but the first column's x = -0.25 is clamped to 0, so that
    # bin averages columns 0 and 0.25: +0.125.
    got = np.asarray(roi_align(feature, box, (80, 112), 16, output_size=2, sampling_ratio=2))[0, 0, :, :, 0]
    np.testing.assert_allclose(got, [[10.125, 11], [20.125, 21]], atol=1e-5)
    # Unaligned, the same box samples half a cell further on: (1.5, 0.5) -> 15.5.
    got = np.asarray(roi_align(feature, box, (80, 112), 16, output_size=2, sampling_ratio=1,
                               aligned=False))[0, 0, :, :, 0]
    np.testing.assert_allclose(got, [[15.5, 16.5], [25.5, 26.5]], atol=1e-5)


def test_assign_levels_by_fpn_equation_1():
    # Boxes of known pixel size in a 600 x 1000 image; sqrt(wh): 224 -> 4, 112 -> 3,
    # 448 -> 5, 111 -> 2, 224 as 112 x 448 -> 4, 16 -> 2 (clamped), 900 -> 5 (clamped).
    sizes = [(224, 224), (112, 112), (448, 448), (111, 111), (112, 448), (16, 16), (600, 1000)]
    boxes = np.array([[0.0, 0.0, h / 600, w / 1000] for h, w in sizes], np.float32)
    levels = np.asarray(assign_levels(boxes, (600, 1000), 2, 5))
    np.testing.assert_array_equal(levels, [4, 3, 5, 2, 4, 2, 5])
    np.testing.assert_array_equal(np.asarray(assign_levels(boxes[:1], (600, 1000), 2, 3)), [3])
    # Degenerate and flipped boxes get the finest level, never NaN.
    odd = np.array([[0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.4, 0.2]], np.float32)
    np.testing.assert_array_equal(np.asarray(assign_levels(odd, (600, 1000), 2, 5)), [2, 2])


def multi_level_case():
    image_size = (96, 128)
    strides = (4, 8, 16, 32)
    maps = random_maps([(24, 32), (12, 16), (6, 8), (3, 4)], channels=2, seed=1)
    # sqrt(wh) in pixels: 20, 60, 100, 130, 260, 500 (-> levels 2, 2, 2, 3, 4, 5) and a box over the border.
    sides = [20, 60, 100, 130, 260, 500]
    rows = []
    for b in range(2):
        row = []
        for i, side in enumerate(sides):
            h, w = side * 0.8, side / 0.8  # non-square, sqrt(h w) = side
            cy, cx = 30 + 7 * i + 5 * b, 40 + 9 * i
            row.append([(cy - h / 2) / 96, (cx - w / 2) / 128, (cy + h / 2) / 96, (cx + w / 2) / 128])
        row.append([0.8, -0.1, 1.1, 0.3])
        rows.append(row)
    return maps, np.array(rows, np.float32), image_size, strides


def test_multi_level_equals_reference():
    maps, boxes, image_size, strides = multi_level_case()
    levels = np.asarray(assign_levels(boxes, image_size, 2, 5))
    np.testing.assert_array_equal(levels[0, :6], [2, 2, 2, 3, 4, 5])
    got = np.asarray(roi_align(maps, boxes, image_size, strides, output_size=3, sampling_ratio=2))
    want = reference(maps, boxes, image_size, strides, 3, 2, True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_xla_compiled_call_gives_the_same_output():
    maps, boxes, image_size, strides = multi_level_case()
    layer = RoIAlign(strides, image_size, output_size=3)
    eager = np.asarray(layer(maps, boxes))
    compiled = tf.function(lambda m, b: layer(m, b), jit_compile=True)
    np.testing.assert_allclose(np.asarray(compiled(maps, boxes)), eager, atol=1e-5)


def test_gradient_is_the_adjoint_of_the_sampling():
    # Every sample of an inside box has bilinear weights summing to one, so the
    # gradient of the sum of the outputs sums to the number of output values.
    (feature,) = random_maps([(5, 7)], batch=1)
    boxes = tf.constant([[[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.5]]])
    feature = tf.Variable(feature)

    @tf.function(jit_compile=True)
    def grad():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(roi_align(feature, boxes, (80, 112), 16, output_size=2))
        return tape.gradient(total, feature)

    g = grad().numpy()
    np.testing.assert_allclose(g.sum(), 2 * 2 * 2 * 3, rtol=1e-5)
    assert (g >= 0).all()


def test_layer_round_trip_and_shapes():
    layer = RoIAlign(16, (80, 112), output_size=14, name="c4_align")
    clone = RoIAlign.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    (feature,) = random_maps([(5, 7)], channels=4)
    out = clone(feature, BOXES)
    assert tuple(out.shape) == (2, 6, 14, 14, 4)
    assert layer.compute_output_shape((2, 5, 7, 4), (2, 6, 4)) == (2, 6, 14, 14, 4)
    inputs = keras.Input((5, 7, 4)), keras.Input((6, 4))
    assert tuple(RoIAlign(16, (80, 112))(*inputs).shape) == (None, 6, 7, 7, 4)


def test_bad_settings_are_named():
    (feature,) = random_maps([(5, 7)])
    with pytest.raises(ValueError, match="adaptive"):
        roi_align(feature, BOXES, (80, 112), 16, sampling_ratio=0)
    with pytest.raises(ValueError, match="consecutive"):
        roi_align(random_maps([(5, 7), (2, 2)]), BOXES, (80, 112), (16, 64))
    with pytest.raises(ValueError, match="stride"):
        roi_align(random_maps([(5, 7), (3, 4)]), BOXES, (80, 112), 16)
    with pytest.raises(ValueError, match=r"\[batch, num_boxes, 4\]"):
        roi_align(feature, BOXES[0], (80, 112), 16)
    with pytest.raises(ValueError, match="one map"):
        RoIAlign(16, (80, 112))([feature], BOXES)
