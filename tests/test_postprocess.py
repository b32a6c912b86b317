import numpy as np
import pytest

from keras_pyramids.ops.postprocess import DetectionPostProcessor

ANCHORS = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.55], [0.5, 0.5, 1.0, 1.0]], np.float32)
LOGIT_09 = np.log(0.9 / 0.1)
LOGIT_08 = np.log(0.8 / 0.2)
LOGIT_07 = np.log(0.7 / 0.3)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float32)))


def run(logits, **kwargs):
    layer = DetectionPostProcessor(max_detections=5, **kwargs)
    out = layer(ANCHORS[None], sigmoid(logits)[None])
    return {k: np.asarray(v) for k, v in out.items()}


def test_overlapping_same_class_is_suppressed():
    # Anchors 0 and 1 overlap with IoU 0.909 > 0.6: only the higher score survives.
    out = run([[LOGIT_08, -20], [LOGIT_09, -20], [LOGIT_07, -20]], score_threshold=0.5)
    assert out["num_detections"][0] == 2
    np.testing.assert_allclose(out["scores"][0, :2], [0.9, 0.7], rtol=1e-5)
    np.testing.assert_allclose(out["boxes"][0, 0], ANCHORS[1], atol=1e-6)
    np.testing.assert_allclose(out["boxes"][0, 1], ANCHORS[2], atol=1e-6)
    np.testing.assert_array_equal(out["classes"][0, :2], [0, 0])
    assert np.all(out["scores"][0, 2:] == 0)


def test_nms_is_per_class_and_respects_score_threshold():
    out = run([[LOGIT_08, -20], [-20, LOGIT_09], [-20, -20]], score_threshold=0.5)
    assert out["num_detections"][0] == 2
    np.testing.assert_array_equal(out["classes"][0, :2], [1, 0])


def test_config_round_trips_and_bad_settings():
    layer = DetectionPostProcessor(score_threshold=0.5, max_detections=2, pre_nms_top_k_per_level=7)
    assert DetectionPostProcessor.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="iou_threshold"):
        DetectionPostProcessor(iou_threshold=1.5)
    with pytest.raises(ValueError, match="pre_nms_top_k_per_level"):
        DetectionPostProcessor(pre_nms_top_k_per_level=0)


def test_top_k_per_level_keeps_each_levels_best_anchors():
    # Level 0: anchors 0-3, level 1: anchors 4-5. Disjoint boxes, one class.
    boxes = np.array([[i / 6, 0, (i + 0.9) / 6, 1] for i in range(6)], np.float32)[None]
    scores = np.array([0.9, 0.2, 0.8, 0.3, 0.1, 0.15], np.float32)[None, :, None]
    layer = DetectionPostProcessor(score_threshold=0.05, max_detections=6, pre_nms_top_k_per_level=2)
    out = {k: np.asarray(v) for k, v in layer(boxes, scores, level_sizes=[4, 2]).items()}
    # Level 0 keeps 0.9 and 0.8 (not 0.3, which beats all of level 1); level 1 keeps both.
    assert out["num_detections"][0] == 4
    np.testing.assert_allclose(out["scores"][0, :4], [0.9, 0.8, 0.15, 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="level_sizes"):
        layer(boxes, scores, level_sizes=[4, 1])


def test_class_specific_boxes_are_suppressed_per_class():
    # Two candidates, two classes; each class has its own box per candidate.
    boxes = np.array([[[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]],
                       [[0, 0, 0.5, 0.52], [0, 0.5, 0.5, 1]]]], np.float32)  # [1, 2, 2, 4]
    scores = np.array([[[0.9, 0.8], [0.7, 0.6]]], np.float32)
    layer = DetectionPostProcessor(score_threshold=0.5, max_detections=4)
    out = {k: np.asarray(v) for k, v in layer(boxes, scores).items()}
    # Class 0: candidate 1's box overlaps candidate 0's (IoU 0.96) and goes; class 1: disjoint, both stay.
    assert out["num_detections"][0] == 3
    np.testing.assert_allclose(out["scores"][0, :3], [0.9, 0.8, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(out["classes"][0, :3], [0, 1, 1])
    np.testing.assert_allclose(out["boxes"][0, 1], [0.5, 0.5, 1, 1])
    with pytest.raises(ValueError, match="class-specific boxes need 'hard'"):
        DetectionPostProcessor(nms="soft_linear")(boxes, scores)


def test_suppression_on_unclipped_boxes_then_clip_and_drop_zero_area():
    """The OD API order: NMS on the decoded boxes, then clip_to_window and drop zero-area boxes."""
    boxes = np.array([[[-0.5, 0.0, 0.5, 0.5],   # unclipped IoU with the next one 0.5 < 0.6: both kept
                       [0.0, 0.0, 0.5, 0.5],    # (clipped first, they would be equal and one suppressed)
                       [1.2, 0.2, 1.5, 0.4]]],  # entirely below the image: zero area once clipped
                     np.float32)
    scores = np.array([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.95]]], np.float32)
    for nms in ("hard", "soft_linear"):
        layer = DetectionPostProcessor(max_detections=5, score_threshold=0.5, iou_threshold=0.6, nms=nms)
        out = {k: np.asarray(v) for k, v in layer(boxes, scores).items()}
        assert out["num_detections"][0] == 2, nms
        np.testing.assert_allclose(out["scores"][0, :2], [0.9, 0.8], rtol=1e-6)
        np.testing.assert_allclose(out["boxes"][0, :2], [[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]], atol=1e-6)
        np.testing.assert_array_equal(out["classes"][0, :2], [0, 0])
        assert np.all(out["scores"][0, 2:] == 0) and np.all(out["boxes"][0, 2:] == 0)


def test_a_dropped_box_does_not_take_a_detection_slot():
    # Three valid boxes of three classes and one zero-area box scoring highest; max_detections 3.
    boxes = np.array([[[1.1, 0.0, 1.3, 0.2], [0.0, 0.0, 0.2, 0.2], [0.3, 0.3, 0.5, 0.5], [0.6, 0.6, 0.8, 0.8]]],
                     np.float32)
    scores = np.array([[[0.99, 0, 0], [0.9, 0, 0], [0, 0.8, 0], [0, 0, 0.7]]], np.float32)
    out = DetectionPostProcessor(max_detections=3, score_threshold=0.5)(boxes, scores)
    assert int(out["num_detections"][0]) == 3
    np.testing.assert_allclose(np.asarray(out["scores"][0]), [0.9, 0.8, 0.7], rtol=1e-6)


def od_api_multiclass_nms(boxes, scores, score_threshold, iou_threshold, per_class, total):
    """The OD API's multiclass_non_max_suppression with a [0, 0, 1, 1] clip window, in numpy.

    Per class: greedy NMS (suppress IoU > threshold) of the boxes scoring above the threshold on
    the unclipped boxes, at most ``per_class``; then all classes sorted by score, clipped to the
    window, zero-area boxes dropped, the best ``total`` kept.
    """
    def iou(a, b):
        inter = (max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept = []
    for c in range(scores.shape[1]):
        order = [i for i in np.argsort(-scores[:, c], kind="stable") if scores[i, c] > score_threshold]
        selected = []
        for i in order:
            if len(selected) == per_class:
                break
            if all(iou(boxes[i], boxes[j]) <= iou_threshold for j in selected):
                selected.append(i)
        kept += [(scores[i, c], c, np.clip(boxes[i], 0, 1)) for i in selected]
    kept.sort(key=lambda k: -k[0])
    kept = [k for k in kept if (k[2][2] - k[2][0]) * (k[2][3] - k[2][1]) > 0]
    return kept[:total]


def test_hard_nms_equals_the_od_api_multiclass_nms_in_numpy():
    rng = np.random.default_rng(3)
    centres = rng.uniform(-0.1, 1.1, (60, 2))
    sizes = rng.uniform(0.05, 0.4, (60, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, (60, 3)).astype(np.float32)
    layer = DetectionPostProcessor(score_threshold=0.3, iou_threshold=0.5, max_detections=25,
                                   max_detections_per_class=10)
    out = {k: np.asarray(v)[0] for k, v in layer(boxes[None], scores[None]).items()}
    expected = od_api_multiclass_nms(boxes, scores, 0.3, 0.5, per_class=10, total=25)
    assert out["num_detections"] == len(expected) == 25
    np.testing.assert_allclose(out["scores"], [k[0] for k in expected], rtol=1e-6)
    np.testing.assert_array_equal(out["classes"], [k[1] for k in expected])
    np.testing.assert_allclose(out["boxes"], np.stack([k[2] for k in expected]), atol=1e-6)
