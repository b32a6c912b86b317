"""The candidate floor that keeps the in-file per-class NMS fast without changing its detections."""

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.export import certain_score_floor


def _iou(box, boxes):
    y0 = np.maximum(box[0], boxes[:, 0])
    x0 = np.maximum(box[1], boxes[:, 1])
    y1 = np.minimum(box[2], boxes[:, 2])
    x1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _final_detections(boxes, scores, score_threshold, iou_threshold, max_detections, per_class_cap):
    """Greedy per-class NMS, every class's survivors pooled and the best ``max_detections`` kept."""
    kept = []
    for c in range(scores.shape[1]):
        order = [i for i in np.argsort(-scores[:, c], kind="stable") if scores[i, c] >= score_threshold]
        selected = []
        for i in order:
            if len(selected) == per_class_cap:
                break
            if not selected or _iou(boxes[i], boxes[selected]).max() <= iou_threshold:
                selected.append(i)
        kept += [(scores[i, c], i, c) for i in selected]
    kept.sort(key=lambda t: -t[0])
    return {(i, c) for _, i, c in kept[:max_detections]}


def _random_case(seed, anchors, classes):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.0, 1.0, (anchors, 2))
    size = rng.uniform(0.05, 0.4, (anchors, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    # Clustered boxes (several anchors on one object) and a spread of scores, as a trained model gives.
    scores = rng.beta(0.3, 6.0, (anchors, classes)).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("seed, anchors, classes", [(0, 300, 4), (1, 500, 12), (2, 400, 30)])
def test_dropping_candidates_below_the_floor_keeps_the_final_detections(seed, anchors, classes):
    boxes, scores = _random_case(seed, anchors, classes)
    settings = dict(score_threshold=1e-8, iou_threshold=0.6, max_detections=100)
    floor = float(certain_score_floor(tf.constant(boxes), tf.constant(scores), settings["score_threshold"],
                                      settings["iou_threshold"], settings["max_detections"], 100))
    assert floor > 0.0  # the case is one where the floor does something
    filtered = np.where(scores >= floor, scores, -1.0)
    assert (filtered > 0).sum() < 0.5 * scores.size  # most pairs never reach the op's NMS
    full = _final_detections(boxes, scores, per_class_cap=100, **settings)
    fast = _final_detections(boxes, filtered, per_class_cap=100, **settings)
    assert fast == full


def test_floor_counts_only_boxes_that_nms_cannot_suppress():
    # One class, three boxes: the second overlaps the first (IoU 0.81), the third does not.
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.45, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)
    scores = np.array([[0.9], [0.8], [0.7]], np.float32)
    args = (tf.constant(boxes), tf.constant(scores), 1e-8, 0.6)
    # Certain: 0.9 (best of its class) and 0.7; the 0.8 box may be suppressed, so the 2nd floor is 0.7.
    assert float(certain_score_floor(*args, max_detections=2, max_detections_per_class=3)) == pytest.approx(0.7)
    assert float(certain_score_floor(*args, max_detections=1, max_detections_per_class=3)) == pytest.approx(0.9)
    # Fewer certain survivors than detections asked for: nothing may be dropped.
    assert float(certain_score_floor(*args, max_detections=3, max_detections_per_class=3)) == -1.0
    # A box entirely outside the image is dropped after NMS, so it is never certain.
    outside = boxes.copy()
    outside[2] = [1.1, 1.1, 1.3, 1.3]
    args = (tf.constant(outside), tf.constant(scores), 1e-8, 0.6)
    assert float(certain_score_floor(*args, max_detections=2, max_detections_per_class=3)) == -1.0


def test_floor_follows_nms_through_a_cluster():
    # Box 1 is suppressed by box 0 (IoU 0.82); box 2 overlaps only box 1 (IoU 0.67), so NMS keeps it,
    # which takes a second round to know; box 3 overlaps box 2 (IoU 0.67), so it is suppressed.
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.05, 0.5, 0.55], [0.0, 0.15, 0.5, 0.65],
                      [0.0, 0.25, 0.5, 0.75]], np.float32)
    scores = np.array([[0.9], [0.8], [0.7], [0.6]], np.float32)
    args = (tf.constant(boxes), tf.constant(scores), 1e-8, 0.6)
    assert float(certain_score_floor(*args, max_detections=2, max_detections_per_class=4)) == pytest.approx(0.7)
    assert float(certain_score_floor(*args, max_detections=2, max_detections_per_class=4, rounds=1)) == -1.0
    assert float(certain_score_floor(*args, max_detections=3, max_detections_per_class=4)) == -1.0
