import numpy as np
import pytest

from keras_pyramids.ops import box_coder
from keras_pyramids.ops.matcher import BACKGROUND, IGNORE, argmax_match
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder


def test_thresholds_hand_worked():
    iou = [[0.7, 0.2, 0.45, 0.0], [0.1, 0.55, 0.3, 0.05]]
    matches = argmax_match(iou, matched_threshold=0.5, unmatched_threshold=0.4).numpy()
    np.testing.assert_array_equal(matches, [0, 1, IGNORE, BACKGROUND])


def test_force_match_gives_every_box_its_best_anchor():
    iou = [[0.9, 0.6, 0.0], [0.3, 0.4, 0.1]]
    plain = argmax_match(iou, force_match=False).numpy()
    np.testing.assert_array_equal(plain, [0, 0, BACKGROUND])
    # Box 1 has no anchor above 0.5; its best anchor (1) is taken from box 0.
    np.testing.assert_array_equal(argmax_match(iou).numpy(), [0, 1, BACKGROUND])


def test_force_match_tie_goes_to_lowest_box_index():
    np.testing.assert_array_equal(argmax_match([[0.3], [0.2]]).numpy(), [0])
    np.testing.assert_array_equal(argmax_match([[0.7, 0.1], [0.6, 0.0]]).numpy(), [0, BACKGROUND])


def test_no_ground_truth_is_all_background():
    matches = argmax_match(np.zeros((0, 5), np.float32)).numpy()
    np.testing.assert_array_equal(matches, [BACKGROUND] * 5)


def test_bad_thresholds():
    with pytest.raises(ValueError, match="unmatched_threshold"):
        argmax_match([[0.5]], matched_threshold=0.4, unmatched_threshold=0.6)


def test_target_assigner_encodes_matched_boxes():
    anchors = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0.5, 0.5, 1]], np.float32)
    boxes = np.array([[0.05, 0.0, 0.5, 0.45]], np.float32)
    targets = AnchorLabelEncoder().bind(anchors)(boxes, np.array([4]))
    np.testing.assert_array_equal(targets["classes"].numpy(), [4, BACKGROUND, BACKGROUND])
    np.testing.assert_allclose(targets["boxes"].numpy()[1:], 0.0)
    decoded = np.asarray(box_coder.decode(targets["boxes"], anchors))
    np.testing.assert_allclose(decoded[0], boxes[0], atol=1e-5)
