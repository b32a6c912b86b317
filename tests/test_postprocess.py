import numpy as np
import pytest

from keras_pyramids.ops.postprocess import DetectionPostProcessor

ANCHORS = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.55], [0.5, 0.5, 1.0, 1.0]], np.float32)
LOGIT_09 = np.log(0.9 / 0.1)
LOGIT_08 = np.log(0.8 / 0.2)
LOGIT_07 = np.log(0.7 / 0.3)


def run(logits, **kwargs):
    layer = DetectionPostProcessor(max_detections=5, **kwargs)
    out = layer(np.zeros((1, 3, 4), np.float32), np.asarray(logits, np.float32)[None], ANCHORS)
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


def test_boxes_are_clipped_and_config_round_trips():
    layer = DetectionPostProcessor(score_threshold=0.5, max_detections=2)
    codes = np.array([[[0, 0, 20, 20]]], np.float32)  # grows the box far past the image
    out = layer(codes, np.array([[[5.0]]], np.float32), np.array([[0.4, 0.4, 0.6, 0.6]], np.float32))
    np.testing.assert_allclose(np.asarray(out["boxes"])[0, 0], [0, 0, 1, 1])
    assert DetectionPostProcessor.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="iou_threshold"):
        DetectionPostProcessor(iou_threshold=1.5)
