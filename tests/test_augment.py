"""Box-aware augmentation: Keras flip with boxes, SSD crop box transform and sampling."""

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.data import augment


def _block_image(box, height=40, width=80):
    """Black image with a white block exactly covering normalised ``box``."""
    image = np.zeros((height, width, 3), np.uint8)
    y0, x0, y1, x1 = np.round(np.array(box) * [height, width, height, width]).astype(int)
    image[y0:y1, x0:x1] = 255
    return image


def _block_box(image):
    """Normalised yxyx extent of the non-black pixels."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    h, w = image.shape[:2]
    return np.array([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w])


def test_flip_mirrors_hand_worked_box_and_image():
    box = [0.2, 0.1, 0.5, 0.4]
    mirrored = [0.2, 0.6, 0.5, 0.9]  # xmin' = 1 - xmax, xmax' = 1 - xmin
    image = _block_image(box)
    layer = augment.make_random_flip(seed=1)

    @tf.function
    def flip(image, boxes, classes):
        return augment.random_horizontal_flip(image, boxes, classes, layer)

    seen = set()
    for _ in range(16):
        out_image, out_boxes, out_classes = flip(image, tf.constant([box]), tf.constant([3]))
        out_boxes = out_boxes.numpy()[0]
        assert out_image.dtype == tf.float32 and out_image.shape == image.shape
        np.testing.assert_array_equal(out_classes, [3])
        # Whichever way it went, the box still encloses the block exactly.
        np.testing.assert_allclose(out_boxes, _block_box(out_image.numpy()), atol=1e-6)
        if np.allclose(out_boxes, mirrored):
            seen.add("flipped")
        else:
            np.testing.assert_allclose(out_boxes, box, atol=1e-6)
            seen.add("kept")
    assert seen == {"flipped", "kept"}


def test_flip_with_no_boxes():
    layer = augment.make_random_flip(seed=0)
    _, boxes, classes = augment.random_horizontal_flip(
        np.zeros((8, 8, 3), np.uint8), tf.zeros([0, 4]), tf.zeros([0], tf.int32), layer
    )
    assert boxes.shape == (0, 4) and classes.shape == (0,)


WINDOW = [0.25, 0.5, 0.75, 1.0]  # patch: rows 0.25..0.75, columns 0.5..1
CROP_BOXES = tf.constant(
    [
        [0.3, 0.6, 0.5, 0.8],  # inside -> moved into the patch frame
        [0.2, 0.55, 0.4, 0.75],  # sticks out at the top: 3/4 of it inside, centre inside
        [0.0, 0.0, 0.4, 0.6],  # 1/16 of it inside (rows .25-.4, columns .5-.6), centre outside
        [0.7, 0.9, 0.8, 1.0],  # half inside, centre (0.75, 0.95) on the border
        [0.75, 0.6, 0.9, 0.7],  # touches the bottom edge only: entirely outside
    ]
)


def test_crop_boxes_keep_the_boxes_covered_enough_as_the_od_api():
    # OD API _strict_random_crop_image: prune_completely_outside_window, then
    # prune_non_overlapping_boxes(min_overlap=overlap_thresh) on intersection over the box's area.
    classes = tf.constant([0, 1, 2, 3, 4])
    kept = {}
    for threshold in (0.0, 0.1, 0.5, 0.9):
        _, out_classes = augment.crop_boxes(CROP_BOXES, classes, WINDOW, overlap_threshold=threshold)
        kept[threshold] = out_classes.numpy().tolist()
    assert kept == {0.0: [0, 1, 2, 3], 0.1: [0, 1, 3], 0.5: [0, 1, 3], 0.9: [0]}
    out_boxes, _ = augment.crop_boxes(CROP_BOXES, classes, WINDOW, overlap_threshold=0.5)
    np.testing.assert_allclose(
        out_boxes.numpy(), [[0.1, 0.2, 0.5, 0.6], [0.0, 0.1, 0.3, 0.5], [0.9, 0.8, 1.0, 1.0]], atol=1e-6
    )
    # A degenerate (zero-area) box never survives.
    empty, _ = augment.crop_boxes([[0.5, 0.6, 0.5, 0.7]], [0], WINDOW)
    assert empty.shape == (0, 4)


def test_crop_boxes_centre_rule_is_the_ssd_papers_wording():
    classes = tf.constant([0, 1, 2, 3, 4])
    out_boxes, out_classes = augment.crop_boxes(CROP_BOXES, classes, WINDOW, box_rule="centre")
    np.testing.assert_allclose(
        out_boxes.numpy(), [[0.1, 0.2, 0.5, 0.6], [0.0, 0.1, 0.3, 0.5]], atol=1e-6
    )
    np.testing.assert_array_equal(out_classes, [0, 1])
    # Clipped area below the threshold -> dropped.
    tiny, _ = augment.crop_boxes([[0.5, 0.74, 0.501, 0.76]], [0], WINDOW, box_rule="centre")
    assert tiny.shape == (0, 4)
    with pytest.raises(ValueError, match="box_rule must be one of"):
        augment.crop_boxes(CROP_BOXES, classes, WINDOW, box_rule="center")


def test_crop_cases_and_keep_original_probability():
    """The seven overlap cases are drawn evenly and the original is kept 15% of the time."""
    sample = tf.function(augment.sample_ssd_crop_window)
    box = tf.constant([[0.3, 0.2, 0.6, 0.5]])
    whole, thresholds = 0, []
    for s in range(400):
        offset, size, window, threshold = sample(tf.constant([60, 60, 3]), box, tf.constant([s, 3], tf.int64))
        if np.all(size.numpy() == -1):
            whole += 1
            assert float(threshold) == 0.0
        else:
            thresholds.append(round(float(threshold), 2))
    assert 0.10 < whole / 400 < 0.20
    assert set(thresholds) == set(augment.MIN_OBJECT_COVERED)


def test_ssd_random_crop_keeps_boxes_on_their_pixels_and_is_seeded():
    box = [0.3, 0.2, 0.6, 0.5]
    image = _block_image(box, 60, 60)
    crop = tf.function(augment.ssd_random_crop)
    shapes_seen = set()
    for s in range(25):
        seed = tf.constant([s, 7], tf.int64)
        out_image, out_boxes, out_classes = crop(image, tf.constant([box]), tf.constant([2]), seed)
        again = crop(image, tf.constant([box]), tf.constant([2]), seed)
        np.testing.assert_array_equal(out_image, again[0])
        np.testing.assert_array_equal(out_boxes, again[1])
        out_image, out_boxes = out_image.numpy(), out_boxes.numpy()
        shapes_seen.add(out_image.shape)
        # Patch area and aspect ratio within the SSD ranges (up to pixel rounding).
        area = out_image.shape[0] * out_image.shape[1] / 3600
        assert 0.09 <= area <= 1.0
        if len(out_boxes):
            np.testing.assert_array_equal(out_classes, [2])
            assert np.all((out_boxes >= 0) & (out_boxes <= 1))
            # The kept box is where the block's visible pixels are.
            np.testing.assert_allclose(out_boxes[0], _block_box(out_image), atol=1.01 / min(out_image.shape[:2]))
    assert (60, 60, 3) in shapes_seen and len(shapes_seen) > 5


def test_ssd_random_crop_without_boxes():
    image = np.zeros((30, 40, 3), np.uint8)
    out_image, boxes, classes = augment.ssd_random_crop(
        image, tf.zeros([0, 4]), tf.zeros([0], tf.int32), tf.constant([1, 2], tf.int64)
    )
    assert out_image.shape[2] == 3 and boxes.shape == (0, 4) and classes.shape == (0,)


def test_crop_boxes_equal_the_od_api_rule_in_numpy():
    """prune_completely_outside_window + prune_non_overlapping_boxes(ioa >= thresh) + clip, on random boxes."""
    rng = np.random.default_rng(0)
    centres, sides = rng.uniform(-0.1, 1.1, (200, 2)), rng.uniform(0.02, 0.3, (200, 2))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1).astype(np.float32)  # yxyx
    for threshold in MIN_OVERLAPS:
        y0, x0 = rng.uniform(0, 0.3, 2)
        window = np.array([y0, x0, y0 + rng.uniform(0.4, 0.7), x0 + rng.uniform(0.4, 0.7)], np.float32)
        outside = ((boxes[:, 0] >= window[2]) | (boxes[:, 1] >= window[3]) | (boxes[:, 2] <= window[0])
                   | (boxes[:, 3] <= window[1]))
        inter = (np.clip(np.minimum(boxes[:, 2], window[2]) - np.maximum(boxes[:, 0], window[0]), 0, None)
                 * np.clip(np.minimum(boxes[:, 3], window[3]) - np.maximum(boxes[:, 1], window[1]), 0, None))
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = ~outside & (inter / area >= threshold)
        size = np.tile(window[2:] - window[:2], 2)
        expected = np.clip((boxes[keep] - np.tile(window[:2], 2)) / size, 0, 1)
        out_boxes, out_classes = augment.crop_boxes(boxes, np.arange(200, dtype=np.int32), window, threshold)
        np.testing.assert_array_equal(out_classes, np.nonzero(keep)[0])
        np.testing.assert_allclose(out_boxes, expected, atol=1e-5)
        assert 0 < keep.sum() < 200


MIN_OVERLAPS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
