"""RPN targets: batched matching with low-quality matches, balanced sampling, box codes."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops.box_coder import BoxCoder
from keras_pyramids.ops.matcher import BACKGROUND, IGNORE, batched_argmax_match
from keras_pyramids.ops.rpn_label_encoder import RPNLabelEncoder
from keras_pyramids.ops.sampling import sample_balanced, scatter_labels

SEED = tf.constant([7, 0], tf.int32)

ANCHORS = np.array([
    [0.0, 0.0, 0.4, 0.4],    # = box 0: IoU 1
    [0.05, 0.05, 0.45, 0.45],  # IoU 0.1225 / 0.1975 = 0.62 with box 0: ignored
    [0.5, 0.5, 0.9, 0.9],    # IoU 0.09 with box 1: negative
    [0.5, 0.5, 0.7, 0.7],    # IoU 0.36 with box 1, its best anchor: positive (low quality)
    [0.0, 0.6, 0.3, 1.1],    # crosses the right border; IoU 0.114 / 0.15 = 0.76 with box 2: positive
    [0.6, 0.0, 1.0, 0.2],    # equals a padded (invalid) box: negative
], np.float32)
GT = np.array([
    [[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 0.62, 0.62], [0.0, 0.62, 0.3, 1.0], [0.6, 0.0, 1.0, 0.2]],
    [[0.6, 0.0, 1.0, 0.2], [0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
], np.float32)
GT_VALID = np.array([[True, True, True, False], [False, False, False, False]])


def test_batched_match_hand_worked():
    iou = np.array([[[0.9, 0.2, 0.45, 0.0], [0.1, 0.25, 0.3, 0.05]]], np.float32)
    valid = np.array([[True, True]])
    plain = batched_argmax_match(iou, valid, 0.7, 0.3).numpy()
    np.testing.assert_array_equal(plain, [[0, BACKGROUND, IGNORE, BACKGROUND]])
    # Box 1's best IoU is 0.3 at anchor 2: positive, but it keeps the box it overlaps
    # most (box 0, 0.45), as detectron2 does.
    low = batched_argmax_match(iou, valid, 0.7, 0.3, allow_low_quality_matches=True).numpy()
    np.testing.assert_array_equal(low, [[0, BACKGROUND, 0, BACKGROUND]])


def test_batched_match_ties_padding_and_zero_overlap():
    iou = np.array([[[0.4, 0.4, 0.1], [0.0, 0.0, 0.0], [0.9, 0.9, 0.9]]], np.float32)
    # Row 2 is padding; box 1 overlaps nothing and creates no match; box 0's tie makes two positives.
    got = batched_argmax_match(iou, [[True, True, False]], 0.7, 0.3, allow_low_quality_matches=True).numpy()
    np.testing.assert_array_equal(got, [[0, 0, BACKGROUND]])
    none = batched_argmax_match(iou, [[False, False, False]], 0.7, 0.3, True).numpy()
    np.testing.assert_array_equal(none, [[BACKGROUND] * 3])


def test_rpn_targets_hand_worked():
    targets = RPNLabelEncoder().encode(ANCHORS, GT, GT_VALID, SEED)
    objectness = targets["objectness"].numpy()
    np.testing.assert_array_equal(objectness, [[1, -1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]])
    codes = targets["box_targets"].numpy()
    # Anchor 3 -> box 1 with unscaled Faster R-CNN codes: centres 0.56 vs 0.6, sides 0.12 vs 0.2.
    np.testing.assert_allclose(codes[0, 3], [-0.2, -0.2, math.log(0.6), math.log(0.6)], atol=1e-5)
    np.testing.assert_allclose(codes[0, 0], 0.0, atol=1e-6)
    decoded = BoxCoder((1, 1, 1, 1)).decode(codes[0, 4], ANCHORS[4])
    np.testing.assert_allclose(np.asarray(decoded), GT[0, 2], atol=1e-5)
    # No box loss outside the positives, and no positives without ground truth.
    np.testing.assert_array_equal(codes[0, [1, 2, 5]], 0.0)
    np.testing.assert_array_equal(codes[1], 0.0)


def grid_anchors(n=20):
    """n * n anchors tiling the image."""
    y, x = np.meshgrid(np.arange(n) / n, np.arange(n) / n, indexing="ij")
    return np.stack([y, x, y + 1 / n, x + 1 / n], -1).reshape(-1, 4).astype(np.float32)


def test_sampling_quota_and_fill():
    anchors = grid_anchors()  # 400 anchors
    # Image 0: a box on every anchor of every other row -> 200 positives (> 128), 200 negatives.
    # Image 1: three boxes -> 3 positives, the rest filled with negatives.
    many = np.array([[r / 20, c / 20, (r + 1) / 20, (c + 1) / 20] for r in range(0, 20, 2) for c in range(20)])
    few = np.zeros_like(many)
    few[:3] = [[0.0, 0.0, 0.05, 0.05], [0.5, 0.5, 0.55, 0.55], [0.2, 0.7, 0.25, 0.75]]
    boxes = np.stack([many, few]).astype(np.float32)
    valid = np.stack([np.ones(200, bool), np.arange(200) < 3])
    encoder = RPNLabelEncoder()
    objectness = encoder.encode(anchors, boxes, valid, SEED)["objectness"].numpy()
    assert (objectness[0] == 1).sum() == 128 and (objectness[0] == 0).sum() == 128
    assert (objectness[1] == 1).sum() == 3 and (objectness[1] == 0).sum() == 253
    # Positives come only from anchors that equal a box (every other row).
    rows = np.arange(400) // 20
    assert np.all(rows[objectness[0] == 1] % 2 == 0)
    # Same seed, same sample; another seed, another sample.
    again = encoder.encode(anchors, boxes, valid, SEED)["objectness"].numpy()
    np.testing.assert_array_equal(again, objectness)
    other = encoder.encode(anchors, boxes, valid, tf.constant([8, 0]))["objectness"].numpy()
    assert not np.array_equal(other[0], objectness[0])
    assert (other[0] == 1).sum() == 128
    # Compiled with XLA (its own random keys): the same quotas.
    compiled = tf.function(lambda b, v: encoder.encode(anchors, b, v, SEED), jit_compile=True)(boxes, valid)
    counts = [((compiled["objectness"].numpy() == k).sum(axis=1)).tolist() for k in (1, 0)]
    assert counts == [[128, 3], [128, 253]]


def test_sample_balanced_static_size_with_few_candidates():
    positive = np.array([[True, False, False, True, False]])
    negative = np.array([[False, True, False, False, True]])
    index, is_pos, valid = sample_balanced(positive, negative, 8, 0.5, SEED)
    assert index.shape == (1, 8)
    assert valid.numpy().tolist() == [[True] * 4 + [False] * 4]
    assert is_pos.numpy().tolist() == [[True, True, False, False] + [False] * 4]
    assert sorted(index.numpy()[0, :2]) == [0, 3] and sorted(index.numpy()[0, 2:4]) == [1, 4]
    labels = scatter_labels(index, is_pos, valid, 5).numpy()
    np.testing.assert_array_equal(labels, [[1, 0, -1, 1, 0]])


def test_xla_compiled_targets_equal_eager():
    # 100 anchors: every candidate is sampled, so XLA's own random keys cannot change the labels.
    anchors = grid_anchors(10)
    boxes = np.array([[[0.1, 0.1, 0.3, 0.25], [0.5, 0.4, 0.9, 0.8]], [[0.0, 0.0, 0.05, 0.05], [0, 0, 0, 0]]],
                     np.float32)
    valid = np.array([[True, True], [True, False]])
    encoder = RPNLabelEncoder()
    eager = encoder.encode(anchors, boxes, valid, SEED)
    compiled = tf.function(lambda b, v, s: encoder.encode(anchors, b, v, s), jit_compile=True)(boxes, valid, SEED)
    np.testing.assert_array_equal(compiled["objectness"].numpy(), eager["objectness"].numpy())
    np.testing.assert_allclose(compiled["box_targets"].numpy(), eager["box_targets"].numpy(), atol=1e-6)


def test_config_round_trip_and_bad_settings():
    encoder = RPNLabelEncoder(num_samples=128)
    clone = RPNLabelEncoder.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
    assert clone.box_coder == BoxCoder((1, 1, 1, 1))
    with pytest.raises(ValueError, match="negative_threshold"):
        RPNLabelEncoder(positive_threshold=0.3, negative_threshold=0.7)
    with pytest.raises(ValueError, match="num_samples"):
        RPNLabelEncoder(num_samples=0)
    with pytest.raises(ValueError, match="positive_fraction"):
        RPNLabelEncoder(positive_fraction=1.5)
