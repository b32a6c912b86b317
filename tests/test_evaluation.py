"""COCO metrics: perfect, empty and hand-worked cases; conversion of model detections."""

import numpy as np
import pytest

from keras_pyramids.evaluation import (
    coco_evaluate,
    detections_to_coco_results,
    predict_coco_results,
)


def _ground_truth():
    """Two 100x200 images: image 1 has two objects (classes 7 and 9), image 2 none."""
    def ann(i, image_id, cat, bbox):
        return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox,
                "area": bbox[2] * bbox[3], "iscrowd": 0}

    return {
        "images": [{"id": 1, "height": 100, "width": 200}, {"id": 2, "height": 100, "width": 200}],
        "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}],
        "annotations": [ann(1, 1, 7, [20.0, 10.0, 60.0, 40.0]), ann(2, 1, 9, [100.0, 50.0, 80.0, 40.0])],
    }


def _result(image_id, cat, bbox, score=0.9):
    return {"image_id": image_id, "category_id": cat, "bbox": bbox, "score": score}


def test_perfect_detections_give_ap_one():
    gt = _ground_truth()
    results = [_result(a["image_id"], a["category_id"], a["bbox"]) for a in gt["annotations"]]
    metrics = coco_evaluate(gt, results)
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(1.0)
    assert metrics["APs"] == -1.0  # no small object: pycocotools' "undefined"
    assert len(metrics) == 12


def test_no_detections_give_zero_not_a_crash():
    metrics = coco_evaluate(_ground_truth(), [])
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0 and metrics["AR100"] == 0.0


def test_one_of_two_objects_found_same_class():
    # Both objects of one class: one found at IoU 1 -> recall 0.5, precision 1
    # up to it; 101-point interpolation gives 51 points of 1 -> AP 51 / 101.
    gt = _ground_truth()
    gt["annotations"][1]["category_id"] = 7
    gt["categories"] = gt["categories"][:1]
    metrics = coco_evaluate(gt, [_result(1, 7, [20.0, 10.0, 60.0, 40.0])])
    assert metrics["AP"] == pytest.approx(51 / 101)
    assert metrics["AR100"] == pytest.approx(0.5)


def test_false_positive_on_empty_image_ranks_below():
    # A higher-scored false positive on the image without objects: precision
    # at the first recall is 1/2 for every IoU threshold -> AP 0.5 (one class).
    gt = _ground_truth()
    gt["annotations"] = gt["annotations"][:1]
    gt["categories"] = gt["categories"][:1]
    results = [_result(2, 7, [0.0, 0.0, 50.0, 50.0], 0.95), _result(1, 7, [20.0, 10.0, 60.0, 40.0], 0.5)]
    assert coco_evaluate(gt, results)["AP"] == pytest.approx(0.5)


def test_unknown_image_or_category_is_an_error():
    with pytest.raises(ValueError, match="image id 5"):
        coco_evaluate(_ground_truth(), [_result(5, 7, [0, 0, 1, 1])])
    with pytest.raises(ValueError, match="category id 3"):
        coco_evaluate(_ground_truth(), [_result(1, 3, [0, 0, 1, 1])])


def test_detections_to_results_pixels_xywh_and_padding_dropped():
    detections = {
        "boxes": np.array([[[0.1, 0.1, 0.5, 0.4], [0.0, 0.0, 0.0, 0.0]]], np.float32),
        "scores": np.array([[0.8, 0.0]], np.float32),
        "classes": np.array([[1, 0]], np.int32),
        "num_detections": np.array([1], np.int32),
    }
    (result,) = detections_to_coco_results(detections, [42], [[100, 200]], category_ids=[7, 9])
    assert result["image_id"] == 42 and result["category_id"] == 9
    np.testing.assert_allclose(result["bbox"], [20.0, 10.0, 60.0, 40.0], rtol=1e-5)
    assert result["score"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="outside"):
        detections_to_coco_results(dict(detections, classes=np.array([[5, 0]])), [1],
                                   [[100, 200]], [7, 9])


class _FakeDetector:
    """Returns the ground-truth boxes of image 1 for every image (the predict contract)."""

    def predict_on_batch(self, images):
        batch = len(images)
        boxes = np.tile([[[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.9]]], (batch, 1, 1))
        return {"boxes": boxes.astype(np.float32), "scores": np.full((batch, 2), 0.9, np.float32),
                "classes": np.tile([[0, 1]], (batch, 1)).astype(np.int32),
                "num_detections": np.full((batch,), 2, np.int32)}


def test_predict_and_evaluate_end_to_end_with_fake_model():
    batches = [(np.zeros((2, 8, 8, 3), np.float32),
                {"image_id": np.array([1, 2]), "original_size": np.array([[100, 200], [100, 200]])})]
    results, image_ids = predict_coco_results(_FakeDetector(), batches, category_ids=[7, 9])
    assert image_ids == [1, 2] and len(results) == 4
    metrics = coco_evaluate(_ground_truth(), results, image_ids=image_ids)
    # Every object found at IoU 1, but each class has one false positive (on
    # image 2) with the same score -> precision 1/2 at full recall.
    assert 0.0 < metrics["AP"] < 1.0
    assert metrics["AR100"] == pytest.approx(1.0)
