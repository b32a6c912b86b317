"""Anchor coverage: the numbers on a hand-made dataset whose best IoUs are known."""

import json
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_pyramids as kp
from keras_pyramids import anchor_coverage as ac
from keras_pyramids import cli
from keras_pyramids.data import DetectionDataset
from keras_pyramids.data.dataset import example_signature
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder
from keras_pyramids.ops.rpn_label_encoder import RPNLabelEncoder

# Three anchors (normalised yxyx) of a pretend model; images are 100x100 px.
ANCHORS = np.array([
    [0.0, 0.0, 0.5, 0.5],     # A0: top-left quarter
    [0.5, 0.5, 1.0, 1.0],     # A1: bottom-right quarter
    [0.0, 0.5, 0.25, 0.75],   # A2: a small one at the top
], np.float32)
MATCHER = {"matched_threshold": 0.5, "unmatched_threshold": 0.5, "force_match": True}


def pretend_model(**matcher):
    """What the tool reads from a detector: its anchors and its label encoder's matcher settings."""
    return types.SimpleNamespace(anchors=ANCHORS, label_encoder=AnchorLabelEncoder(**dict(MATCHER, **matcher)))
SIDE = 100

# image -> [(box, class)], with each box's expected best IoU, anchors and status.
IMAGES = [
    [([0.0, 0.0, 0.5, 0.5], 0),      # = A0: IoU 1, 50x50 px medium
     ([0.5, 0.5, 1.0, 0.9], 1),      # in A1: 0.5*0.4 / 0.25 = 0.8, 50x40 medium
     ([0.0, 0.5, 0.05, 0.55], 2)],   # in A2: 0.0025 / 0.0625 = 0.04 -> forced, 5x5 small
    [([0.0, 0.0, 1.0, 1.0], 0)],     # whole image: 0.25 with A0 and A1, forced to A0, large
    [([0.0, 0.0, 0.4, 0.4], 1),      # in A0: 0.16 / 0.25 = 0.64, 40x40 medium
     ([0.0, 0.0, 0.1, 0.1], 2)],     # in A0: 0.01 / 0.25 = 0.04; its forced anchor A0 goes to
]                                    # the box before it (lowest index wins): none, 10x10 small
EXPECTED = [  # (best IoU, anchors, status)
    (1.0, 1, "matched"), (0.8, 1, "matched"), (0.04, 1, "forced"),
    (0.25, 1, "forced"),
    (0.64, 1, "matched"), (0.04, 0, "none"),
]


def hand_made_dataset():
    def generate():
        for index, objects in enumerate(IMAGES):
            yield {"image": np.zeros((SIDE, SIDE, 3), np.uint8),
                   "boxes": np.array([b for b, _ in objects], np.float32),
                   "classes": np.array([c for _, c in objects], np.int32),
                   "image_id": np.int64(index + 1)}

    examples = tf.data.Dataset.from_generator(generate, output_signature=example_signature())
    return DetectionDataset(examples, ["circle", "square", "triangle"], num_examples=len(IMAGES))


PRETEND_MODEL = pretend_model()


def test_every_box_gets_its_known_best_iou_anchor_count_and_status():
    coverage = ac.anchor_coverage(PRETEND_MODEL, hand_made_dataset())
    np.testing.assert_allclose(coverage.best_iou, [e[0] for e in EXPECTED], atol=1e-5)
    assert list(coverage.num_anchors) == [e[1] for e in EXPECTED]
    assert list(coverage.status) == [e[2] for e in EXPECTED]
    assert list(coverage.image_ids) == [1, 1, 1, 2, 3, 3]
    assert list(coverage.sizes) == ["medium", "medium", "small", "large", "medium", "small"]
    np.testing.assert_allclose(coverage.widths, [50, 40, 5, 100, 40, 10], atol=1e-4)


def test_summary_by_size_and_class():
    summary = ac.anchor_coverage(PRETEND_MODEL, hand_made_dataset()).summary()
    assert summary["images"] == 3 and summary["anchors"] == 3
    small, medium, large = (summary["by_size"][s] for s in ac.SIZES)
    assert (small["boxes"], small["matched"], small["forced"], small["none"]) == (2, 0, 1, 1)
    assert small["mean_best_iou"] == pytest.approx(0.04, abs=1e-5)
    assert small["mean_anchors_per_box"] == pytest.approx(0.5)
    assert (medium["boxes"], medium["matched"]) == (3, 3)
    assert medium["mean_best_iou"] == pytest.approx((1.0 + 0.8 + 0.64) / 3, abs=1e-5)
    assert (large["boxes"], large["forced"]) == (1, 1)
    circle, square, triangle = (summary["by_class"][n] for n in ("circle", "square", "triangle"))
    assert (circle["boxes"], circle["matched"], circle["forced"]) == (2, 1, 1)
    assert (square["boxes"], square["matched"]) == (2, 2)
    assert (triangle["boxes"], triangle["forced"], triangle["none"]) == (2, 1, 1)
    assert summary["all"]["median_best_iou"] == pytest.approx((0.25 + 0.64) / 2, abs=1e-5)


def test_without_force_match_low_boxes_get_nothing_and_a_stricter_threshold_drops_more():
    strict = pretend_model(matched_threshold=0.7, unmatched_threshold=0.3, force_match=False)
    coverage = ac.anchor_coverage(strict, hand_made_dataset())
    assert list(coverage.status) == ["matched", "matched", "none", "none", "none", "none"]
    assert list(coverage.num_anchors) == [1, 1, 0, 0, 0, 0]


def test_a_two_stage_model_is_looked_at_through_its_rpn():
    """detectron2's rule: IoU >= 0.7 matches; every anchor tied at a box's best IoU is a
    low-quality ("forced") match, so the whole-image box gets both quarter anchors."""
    rpn_model = types.SimpleNamespace(anchors=ANCHORS, rpn_label_encoder=RPNLabelEncoder())
    coverage = ac.anchor_coverage(rpn_model, hand_made_dataset())
    assert (coverage.matched_threshold, coverage.unmatched_threshold) == (0.7, 0.3)
    np.testing.assert_allclose(coverage.best_iou, [e[0] for e in EXPECTED], atol=1e-5)
    assert list(coverage.status) == ["matched", "matched", "forced", "forced", "forced", "none"]
    assert list(coverage.num_anchors) == [1, 1, 1, 2, 1, 0]


def test_a_real_model_matches_its_own_anchors_exactly(tmp_path):
    model = kp.build_model("ppn_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25)
    anchors, settings, _ = ac.matching_settings(model)
    assert settings == {"matched_threshold": 0.5, "unmatched_threshold": 0.5, "force_match": True}
    inside = np.nonzero((anchors.min(axis=1) >= 0) & (anchors.max(axis=1) <= 1))[0]
    chosen = anchors[inside[[0, len(inside) // 2, -1]]]

    def generate():
        yield {"image": np.zeros((64, 64, 3), np.uint8), "boxes": chosen,
               "classes": np.array([0, 1, 0], np.int32), "image_id": np.int64(7)}

    data = DetectionDataset(tf.data.Dataset.from_generator(generate, output_signature=example_signature()),
                            ["a", "b"], num_examples=1)
    coverage = ac.anchor_coverage(model, data)
    np.testing.assert_allclose(coverage.best_iou, 1.0, atol=1e-5)
    assert (coverage.status == "matched").all() and (coverage.num_anchors >= 1).all()


def test_plot_and_text(tmp_path):
    coverage = ac.anchor_coverage(PRETEND_MODEL, hand_made_dataset())
    path = ac.plot_anchor_coverage(coverage, str(tmp_path / "coverage.png"))
    assert Image.open(path).size == (800, 500)
    with pytest.raises(FileExistsError):
        ac.plot_anchor_coverage(coverage, path)
    text = coverage.format()
    assert "6 ground-truth boxes in 3 images by 3 anchors" in text
    small_line = next(line for line in text.splitlines() if line.strip().startswith("small"))
    assert small_line.split()[1:4] == ["2", "0.040", "0.040"]
    assert json.loads(json.dumps(coverage.records()))[5] == {
        "image_id": 3, "class": "triangle", "width": pytest.approx(10.0, abs=1e-4),
        "height": pytest.approx(10.0, abs=1e-4), "size": "small",
        "best_iou": pytest.approx(0.04, abs=1e-5), "anchors": 0, "status": "none"}


def test_cli_anchors_on_shapes(tmp_path, capsys):
    plot, report = tmp_path / "cov.png", tmp_path / "cov.json"
    code = cli.main(["anchors", "--model", "ppn_mobilenet", "--image-size", "96",
                     "--model-kwargs", '{"depth_multiplier": 0.25}', "--dataset", "shapes",
                     "--dataset-kwargs", '{"num_examples": 20, "image_size": 96}',
                     "--plot", str(plot), "--output-json", str(report), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "by size (COCO" in out and "circle" in out and str(plot) in out
    saved = json.loads(report.read_text())
    assert saved["summary"]["images"] == 20
    assert len(saved["boxes"]) == saved["summary"]["all"]["boxes"] > 0
    assert plot.stat().st_size > 0
    # Never overwrites its outputs.
    assert cli.main(["anchors", "--model", "ppn_mobilenet", "--dataset", "shapes",
                     "--plot", str(plot)]) == 2
    assert "already exists" in capsys.readouterr().err
    # A classifier has no anchors: named, before any data is loaded.
    assert cli.main(["anchors", "--model", "spp_mobilenet", "--plot", str(tmp_path / "x.png")]) == 2
    assert "spp_mobilenet is a classifier, not a detector" in capsys.readouterr().err
