"""COCO and VOC metrics: perfect, empty and hand-worked cases; conversion of model detections;
the official COCO numbers on a folder with crowd regions and segmentation areas."""

import numpy as np
import pytest

from keras_pyramids.evaluation import (
    coco_evaluate,
    describe_metrics,
    detections_to_coco_results,
    format_metrics,
    get_protocol,
    predict_coco_results,
    voc_evaluate,
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


# -- Pascal VOC metric: a hand-worked example ------------------------------------

def _voc_ground_truth():
    """Two 100x100 images; classes 1 (A), 2 (B), 3 (C); boxes [x, y, w, h]."""
    def ann(i, image_id, cat, bbox, difficult=0):
        return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox,
                "area": bbox[2] * bbox[3], "iscrowd": 0, "difficult": difficult}

    return {
        "images": [{"id": 1, "height": 100, "width": 100}, {"id": 2, "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "A"}, {"id": 2, "name": "B"}, {"id": 3, "name": "C"}],
        "annotations": [
            ann(1, 1, 1, [10, 10, 20, 20]),                 # A1
            ann(2, 1, 1, [60, 60, 20, 20], difficult=1),    # A2 (difficult)
            ann(3, 2, 1, [10, 10, 30, 30]),                 # A3
            ann(4, 2, 1, [60, 10, 20, 20]),                 # A4 (never found)
            ann(5, 2, 2, [0, 50, 10, 10]),                  # B1
            ann(6, 1, 2, [40, 40, 10, 10], difficult=1),    # B2 (difficult)
            ann(7, 1, 3, [0, 0, 50, 50], difficult=1),      # C: difficult only
        ],
    }


VOC_RESULTS = [
    # A, by score: TP (A1), ignored (on difficult A2), FP (A1 again), TP (A3),
    # FP (IoU 200/600 < 0.5 with A4) -> counted TP FP TP FP: recall 1/3 1/3 2/3 2/3,
    # precision 1 1/2 2/3 1/2. 11-point: t = 0..0.3 -> 1, t = 0.4..0.6 -> 2/3,
    # t >= 0.7 -> 0: AP = (4 + 3 * 2/3) / 11 = 6/11. Area: 1/3 * 1 + 1/3 * 2/3 = 5/9.
    _result(1, 1, [10, 10, 20, 20], 0.9),
    _result(1, 1, [60, 60, 20, 20], 0.8),
    _result(1, 1, [11, 11, 20, 20], 0.7),
    _result(2, 1, [10, 10, 30, 30], 0.6),
    _result(2, 1, [70, 10, 20, 20], 0.4),
    # B: first on the difficult B2 (ignored, no point on the curve), then IoU
    # exactly 0.5 with B1 (the devkit's >= 0.5: a TP) -> AP 1 both ways.
    _result(1, 2, [40, 40, 10, 10], 0.95),
    _result(2, 2, [0, 50, 5, 10], 0.9),
    # C has no non-difficult object: AP undefined (-1), left out of the mean.
    _result(1, 3, [0, 0, 50, 50], 0.5),
]


@pytest.mark.parametrize("protocol, ap_a, mean", [("voc2007", 6 / 11, (6 / 11 + 1) / 2),
                                                   ("voc2010", 5 / 9, (5 / 9 + 1) / 2)])
def test_voc_metric_equals_hand_worked_example(protocol, ap_a, mean):
    metrics = get_protocol(protocol).evaluate(_voc_ground_truth(), VOC_RESULTS)
    assert metrics["AP_per_class"] == pytest.approx({"A": ap_a, "B": 1.0, "C": -1.0}, abs=1e-12)
    assert metrics["mAP"] == pytest.approx(mean, abs=1e-12)


def test_voc_metric_on_a_subset_of_images_and_bad_results():
    # Only image 2: A has 2 positives (A3 found, A4 missed) -> recall 1/2 at
    # precision 1, then an FP; 11-point: 6 thresholds (0..0.5) at 1 -> 6/11.
    metrics = voc_evaluate(_voc_ground_truth(), VOC_RESULTS, image_ids=[2])
    assert metrics["AP_per_class"]["A"] == pytest.approx(6 / 11)
    with pytest.raises(ValueError, match="image id 9"):
        voc_evaluate(_voc_ground_truth(), [_result(9, 1, [0, 0, 1, 1])])
    with pytest.raises(ValueError, match="Unknown evaluation protocol 'voc'; choose one of coco, voc2007"):
        get_protocol("voc")


def test_describe_metrics_names_the_protocol():
    metrics = dict(voc_evaluate(_voc_ground_truth(), VOC_RESULTS), protocol="voc2007",
                   num_images=2, num_detections=8)
    text = describe_metrics(metrics, "voc/2007:test")
    assert text.startswith("Pascal VOC2007 metrics on voc/2007:test (2 images, 8 detections")
    assert "11-point" in text and "difficult objects ignored" in text and "A 0.545" in text
    coco = dict(coco_evaluate(_ground_truth(), []), protocol="coco", num_images=2, num_detections=0)
    assert "protocol coco: pycocotools COCOeval" in describe_metrics(coco, "x")
    assert format_metrics(metrics) == "mAP 0.773"


# -- COCO: the official numbers on a folder with crowd regions and segmentation areas --

def _crowded_coco_folder(root):
    """Three 200x160 (w x h) images; crowd regions, and areas unlike the box areas."""
    import json
    import os

    from PIL import Image

    os.makedirs(os.path.join(root, "images"))
    images = []
    for k in (1, 2, 3):  # uniform grey 50 * k: the fake detector recognises the image by it
        Image.new("RGB", (200, 160), (50 * k,) * 3).save(os.path.join(root, "images", f"{k}.png"))
        images.append({"id": 10 * k, "file_name": f"{k}.png", "width": 200, "height": 160})

    def ann(i, image_id, cat, bbox, area, iscrowd=0):
        return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": area,
                "iscrowd": iscrowd, "segmentation": [[0, 0, 1, 0, 1, 1]]}

    annotations = [
        ann(101, 10, 3, [10, 10, 40, 40], 700.0),          # box 1600 (medium), area small
        ann(102, 10, 11, [100, 50, 60, 60], 2000.0),
        ann(103, 10, 3, [0, 100, 200, 60], 9000.0, 1),     # crowd
        ann(201, 20, 11, [20, 20, 30, 30], 500.0),
        ann(202, 20, 3, [80, 40, 100, 100], 6000.0),       # box 10000 (large), area medium
        ann(203, 20, 11, [150, 0, 50, 160], 7000.0, 1),    # crowd
        ann(301, 30, 3, [50, 50, 25, 25], 400.0),
    ]
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}]}, f)
    return path


# Per image (by grey level), detections as (class index, [x, y, w, h] pixels, score).
_CROWDED_DETECTIONS = {
    1: [(0, [10, 10, 40, 40], 0.9), (0, [10, 110, 40, 40], 0.8), (0, [120, 105, 60, 50], 0.75),
        (1, [105, 55, 60, 60], 0.6), (1, [10, 60, 30, 30], 0.3)],
    2: [(1, [20, 22, 30, 30], 0.85), (0, [85, 45, 100, 100], 0.7), (1, [155, 20, 40, 60], 0.65),
        (0, [0, 100, 40, 40], 0.5)],
    3: [(0, [60, 60, 25, 25], 0.4)],
}


class _ImageAwareDetector:
    """Returns ``_CROWDED_DETECTIONS`` of each image, recognised by its grey level."""

    image_size = 64

    def predict_on_batch(self, images):
        images = np.asarray(images)
        boxes, scores, classes, counts = [], [], [], []
        for image in images:
            found = _CROWDED_DETECTIONS[int(round(image.mean() / 50))]
            padded = found + [(0, [0, 0, 0, 0], 0.0)] * (8 - len(found))
            boxes.append([[y / 160, x / 200, (y + h) / 160, (x + w) / 200] for _, (x, y, w, h), _ in padded])
            scores.append([s for _, _, s in padded])
            classes.append([c for c, _, _ in padded])
            counts.append(len(found))
        return {"boxes": np.asarray(boxes), "scores": np.asarray(scores),
                "classes": np.asarray(classes), "num_detections": np.asarray(counts)}


def test_coco_numbers_equal_pycocotools_on_the_original_annotation_file(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from keras_pyramids.data import load_dataset, make_inference_pipeline
    from keras_pyramids.data.coco_format import ground_truth_from_examples
    from keras_pyramids.evaluation import STAT_NAMES, evaluate_detector

    annotation_file = _crowded_coco_folder(str(tmp_path))
    data = load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    metrics = evaluate_detector(_ImageAwareDetector(), data, batch_size=2)
    assert metrics["protocol"] == "coco" and metrics["num_images"] == 3 and metrics["num_detections"] == 10

    # pycocotools directly on the annotation file, with the same detections.
    results, _ = predict_coco_results(_ImageAwareDetector(), make_inference_pipeline(data, 64, 2),
                                      data.category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(annotation_file)
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    official = dict(zip(STAT_NAMES, evaluator.stats))
    for name in STAT_NAMES:
        assert abs(metrics[name] - official[name]) <= 1e-9, name

    # The ground truth rebuilt from the loaded examples (the old path: crowd
    # regions dropped, box areas) gives other numbers on this folder.
    rebuilt = coco_evaluate(ground_truth_from_examples(data), results)
    assert abs(rebuilt["AP"] - official["AP"]) > 0.05 and rebuilt["APs"] != official["APs"]


def test_protocol_is_chosen_by_flag_and_written_to_metrics_json(tmp_path):
    import json

    from keras_pyramids.training.trainer import TrainConfig, evaluate_run

    _crowded_coco_folder(str(tmp_path / "data"))
    config = TrainConfig(dataset="coco_folder", data_dir=str(tmp_path / "data"), eval_split="train",
                         model_dir=str(tmp_path / "run"), num_visualize=0, eval_protocol="voc2010")
    (tmp_path / "run").mkdir()
    metrics, _ = evaluate_run(_ImageAwareDetector(), config)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["protocol"] == "voc2010" and written["mAP"] == pytest.approx(metrics["mAP"])
    assert set(written["AP_per_class"]) == {"cat", "dog"}
    with pytest.raises(ValueError, match="Unknown evaluation protocol 'voc12'"):
        TrainConfig(eval_protocol="voc12")


def test_cli_evaluate_says_which_protocol_and_writes_it(tmp_path, capsys):
    import json

    from keras_pyramids import build_model, cli

    _crowded_coco_folder(str(tmp_path / "data"))
    model = build_model("ppn_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25)
    model.save(str(tmp_path / "model.keras"))
    common = ["evaluate", str(tmp_path / "model.keras"), "--dataset", "coco_folder",
              "--data-dir", str(tmp_path / "data"), "--split", "train"]
    assert cli.main(common + ["--protocol", "voc2007", "--output-json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "Pascal VOC2007 metrics on coco_folder:train (3 images" in out and "11-point" in out
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["protocol"] == "voc2007" and -1.0 <= written["mAP"] <= 1.0
    assert cli.main(common) == 0
    assert "protocol coco: pycocotools COCOeval" in capsys.readouterr().out
