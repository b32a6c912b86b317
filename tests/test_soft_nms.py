"""Soft-NMS (Bodla et al. 2017) against hand-worked examples, and the post-processor's nms option."""

import math

import keras
import numpy as np
import pytest

from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.ops.soft_nms import pairwise_iou, soft_nms

# A and B overlap by half of A's width: inter 0.5, union 1.5 -> IoU 1/3. C is apart.
BOXES = np.array([[0, 0, 1, 1], [0, 0.5, 1, 1.5], [2, 2, 3, 3]], np.float32)
SCORES = np.array([0.9, 0.8, 0.7], np.float32)


def run(method, **kwargs):
    index, scores, valid = soft_nms(BOXES, SCORES, 3, method=method, **kwargs)
    return np.asarray(index), np.asarray(scores), int(valid)


def test_pairwise_iou_by_hand():
    iou = np.asarray(pairwise_iou(BOXES))
    np.testing.assert_allclose(iou, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]], atol=1e-6)
    # Degenerate boxes do not divide by zero.
    assert np.asarray(pairwise_iou(np.zeros((2, 4), np.float32)))[0, 1] == 0


def test_linear_decays_overlap_above_threshold():
    index, scores, valid = run("linear", iou_threshold=0.3)
    # B drops to 0.8 * (1 - 1/3) = 0.5333 and now ranks after C.
    np.testing.assert_array_equal(index, [0, 2, 1])
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.8 * (1 - 1 / 3)], rtol=1e-6)
    assert valid == 3


def test_linear_keeps_overlap_below_threshold():
    index, scores, _ = run("linear", iou_threshold=0.5)
    np.testing.assert_array_equal(index, [0, 1, 2])
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7], rtol=1e-6)


def test_gaussian_decay():
    index, scores, _ = run("gaussian", sigma=0.5)
    decayed = 0.8 * math.exp(-((1 / 3) ** 2) / 0.5)  # 0.6406 < 0.7
    np.testing.assert_array_equal(index, [0, 2, 1])
    np.testing.assert_allclose(scores, [0.9, 0.7, decayed], rtol=1e-6)


def test_score_threshold_drops_decayed_boxes_and_pads():
    # 0.5333 < 0.6: B is dropped after the decay; the last slot is padding.
    index, scores, valid = run("linear", iou_threshold=0.3, score_threshold=0.6)
    assert valid == 2
    np.testing.assert_array_equal(index, [0, 2, -1])
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.0], rtol=1e-6)


def test_batched_rows_are_independent():
    boxes = np.stack([BOXES, BOXES[::-1]])[None]  # [1, 2, 3, 4]
    scores = np.stack([SCORES, SCORES])[None]
    index, out, valid = soft_nms(boxes, scores, 2, method="linear", iou_threshold=0.3)
    assert index.shape == (1, 2, 2) and out.shape == (1, 2, 2)
    np.testing.assert_array_equal(np.asarray(index)[0, 0], [0, 2])
    # Row 2: C (0.9), B (0.8), A (0.7) -- the top two do not overlap.
    np.testing.assert_array_equal(np.asarray(index)[0, 1], [0, 1])
    np.testing.assert_array_equal(np.asarray(valid), [[2, 2]])


def test_bad_method():
    with pytest.raises(ValueError, match="soft-NMS method"):
        soft_nms(BOXES, SCORES, 2, method="cubic")


ANCHORS = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.55], [0.5, 0.5, 1.0, 1.0]], np.float32)


def logit(p):
    return math.log(p / (1 - p))


def post(nms, score_threshold, **kwargs):
    layer = DetectionPostProcessor(
        nms=nms, score_threshold=score_threshold, iou_threshold=0.45, max_detections=5, **kwargs
    )
    logits = np.array([[[logit(0.8), -20], [logit(0.9), -20], [-20, logit(0.7)]]], np.float32)
    out = layer(ANCHORS[None], 1.0 / (1.0 + np.exp(-logits)))
    return layer, {k: np.asarray(v) for k, v in out.items()}


def test_postprocessor_soft_linear():
    # Anchors 0/1: IoU 0.25 / 0.275 = 0.9091, so 0.8 decays to 0.8 * 0.0909 = 0.0727.
    layer, out = post("soft_linear", 0.05)
    assert out["boxes"].shape == (1, 5, 4) and out["scores"].shape == (1, 5)
    assert out["classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    assert out["num_detections"][0] == 3
    np.testing.assert_allclose(out["scores"][0, :3], [0.9, 0.7, 0.8 * (1 - 0.25 / 0.275)], rtol=1e-4)
    np.testing.assert_array_equal(out["classes"][0, :3], [0, 1, 0])
    np.testing.assert_allclose(out["boxes"][0, 0], ANCHORS[1], atol=1e-6)
    assert np.all(out["scores"][0, 3:] == 0) and np.all(out["boxes"][0, 3:] == 0)
    config = layer.get_config()
    assert config["nms"] == "soft_linear"
    assert DetectionPostProcessor.from_config(config).get_config() == config


def test_postprocessor_soft_threshold_and_gaussian():
    _, out = post("soft_linear", 0.1)  # 0.0727 < 0.1: dropped
    assert out["num_detections"][0] == 2
    _, out = post("soft_gaussian", 0.05, soft_nms_sigma=0.5)
    iou = 0.25 / 0.275
    np.testing.assert_allclose(out["scores"][0, :3], [0.9, 0.7, 0.8 * math.exp(-(iou**2) / 0.5)], rtol=1e-4)


def test_postprocessor_hard_is_default_and_bad_nms():
    assert DetectionPostProcessor().get_config()["nms"] == "hard"
    _, out = post("hard", 0.05)
    assert out["num_detections"][0] == 2
    with pytest.raises(ValueError, match="nms must be one of"):
        DetectionPostProcessor(nms="soft")


def test_postprocessor_soft_in_graph_mode():
    layer = DetectionPostProcessor(nms="soft_linear", score_threshold=0.05, max_detections=4)
    boxes = keras.Input((3, 4), batch_size=2)
    scores = keras.Input((3, 2), batch_size=2)
    model = keras.Model([boxes, scores], layer(boxes, scores))
    out = model.predict([np.broadcast_to(ANCHORS, (2, 3, 4)), np.full((2, 3, 2), 0.5, np.float32)], verbose=0)
    assert out["boxes"].shape == (2, 4, 4) and out["num_detections"].tolist() == [4, 4]
