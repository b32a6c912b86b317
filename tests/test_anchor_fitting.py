"""Anchor fitting: hand-made box sets of known sizes give the expected scales and ratios, coverage never
falls below the model's anchors', and fitted anchors stay with the model through train, .keras and export."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids import anchor_fitting as af
from keras_pyramids import export
from keras_pyramids.anchor_coverage import anchor_coverage
from keras_pyramids.data import load_dataset
from keras_pyramids.ops.anchors import FPNAnchorGenerator, SSDAnchorGenerator
from keras_pyramids.saving import load_model
from keras_pyramids.training.config import TrainConfig
from keras_pyramids.training.trainer import train

# One grid step of the searched scales (anchor sides), as a factor.
SCALE_STEP = af.SCALE_GRID[1] / af.SCALE_GRID[0]


def boxes_on_grid(grid, side, aspect=1.0):
    """Square (or ``aspect`` = w / h) boxes of area ``side**2`` centred on every cell of a ``grid x grid`` map."""
    centres = (np.arange(grid) + 0.5) / grid
    cy, cx = [c.ravel() for c in np.meshgrid(centres, centres, indexing="ij")]
    h, w = side / np.sqrt(aspect), side * np.sqrt(aspect)
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1).astype(np.float32)


def brute_force_best_iou(boxes, anchors):
    boxes, anchors = np.asarray(boxes, np.float64), np.asarray(anchors, np.float64)
    return af._iou(boxes, np.broadcast_to(anchors, (len(boxes),) + anchors.shape)).max(axis=1)


def test_best_anchor_iou_equals_brute_force_on_both_rules():
    rng = np.random.default_rng(0)
    centre = rng.uniform(0, 1, (300, 2))
    size = np.exp(rng.uniform(np.log(0.02), np.log(0.9), (300, 2)))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    cases = [
        (SSDAnchorGenerator(min_scale=0.15, max_scale=0.95), [(10, 12), (5, 6), (3, 3), (2, 2), (1, 1)], (160, 192)),
        (SSDAnchorGenerator(reduce_boxes_in_lowest_layer=True, aspect_ratios=(1.0, 2.0, 0.5)), [(8, 8), (4, 4)],
         (128, 128)),
        (FPNAnchorGenerator(min_level=3, max_level=5), [(16, 16), (8, 8), (4, 4)], (128, 128)),
    ]
    for generator, shapes, image_size in cases:
        fast = af.best_anchor_iou(boxes, generator, shapes, image_size)
        np.testing.assert_allclose(fast, brute_force_best_iou(boxes, generator(shapes, image_size)), atol=1e-6)


def test_ssd_boxes_of_two_known_sizes_give_those_scales():
    # Level 1 (8x8) holds boxes of side 0.1, level 2 (4x4) boxes of side 0.5, each centred on its cells:
    # anchors of exactly those scales cover every box at IoU 1.
    boxes = np.concatenate([boxes_on_grid(8, 0.1), boxes_on_grid(4, 0.5)])
    start = SSDAnchorGenerator(min_scale=0.2, max_scale=0.95, aspect_ratios=(1.0, 2.0, 0.5),
                               interpolated_scale_aspect_ratio=0.0)
    fit = af.fit_anchors(boxes, start, [(8, 8), (4, 4)], (64, 64), threshold=0.5)
    assert fit.before.matched < 0.5
    assert fit.after.matched == 1.0 and fit.after.mean_best_iou > 0.9
    assert fit.generator.min_scale == pytest.approx(0.1, rel=SCALE_STEP - 1)
    assert fit.generator.max_scale == pytest.approx(0.5, rel=SCALE_STEP - 1)
    assert 1.0 in fit.generator.aspect_ratios and len(fit.generator.aspect_ratios) == 3
    assert "min_scale" in fit.settings() and "covered" in fit.format()


def test_wide_boxes_get_their_aspect_ratio():
    boxes = boxes_on_grid(8, 0.2, aspect=2.0)  # width / height 2
    start = SSDAnchorGenerator(min_scale=0.2, max_scale=0.2, aspect_ratios=(1.0, 3.0),
                               interpolated_scale_aspect_ratio=0.0)
    fit = af.fit_anchors(boxes, start, [(8, 8)], (64, 64))
    assert 2.0 in fit.generator.aspect_ratios
    assert fit.after.mean_best_iou > 0.99


def test_fpn_box_side_gives_the_anchor_size():
    # 24-pixel boxes on the stride-8 level of a 128-pixel image: anchor_size * 8 = 24.
    boxes = boxes_on_grid(16, 24 / 128)
    start = FPNAnchorGenerator(min_level=3, max_level=3, num_scales=1, anchor_size=8.0)
    fit = af.fit_anchors(boxes, start, [(16, 16)], (128, 128))
    step = af.ANCHOR_SIZE_GRID[1] / af.ANCHOR_SIZE_GRID[0]
    assert fit.generator.anchor_size == pytest.approx(3.0, rel=step - 1)
    assert fit.before.matched == 0.0 and fit.after.matched == 1.0
    # Explicit sizes (the C4 RPN's) are fitted by one factor.
    fit = af.fit_anchors(boxes, FPNAnchorGenerator(min_level=3, max_level=3, sizes=(64.0, 128.0)),
                         [(16, 16)], (128, 128))
    assert min(abs(np.log(size / 24.0)) for size in fit.generator.sizes) < np.log(step)
    assert len(fit.generator.sizes) == 2 and fit.after.matched == 1.0


def test_coverage_never_falls_below_the_models_anchors():
    rng = np.random.default_rng(0)
    # Sizes from tiny to whole-image, any aspect: a set the defaults already suit in part.
    centre = rng.uniform(0.1, 0.9, (100, 2))
    size = np.exp(rng.uniform(np.log(0.03), np.log(1.0), (100, 2)))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0, 1).astype(np.float32)
    shapes = [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    for start in (SSDAnchorGenerator(min_scale=0.15, max_scale=0.95), SSDAnchorGenerator()):
        fit = af.fit_anchors(boxes, start, shapes, (160, 160))
        assert fit.after.key >= fit.before.key
        assert fit.after == af.coverage_of(boxes, fit.generator, shapes, (160, 160), 0.5)
    # Boxes the start already covers perfectly: nothing to gain, the start is kept.
    start = SSDAnchorGenerator(min_scale=0.1, max_scale=0.1, aspect_ratios=(1.0,), interpolated_scale_aspect_ratio=0)
    fit = af.fit_anchors(boxes_on_grid(10, 0.1), start, [(10, 10)], (100, 100))
    assert not fit.changed and fit.generator is start


def test_anchor_kinds_it_cannot_fit_and_empty_data_are_refused():
    with pytest.raises(ValueError, match="needs training boxes"):
        af.fit_anchors(np.zeros((0, 4)), SSDAnchorGenerator(), [(4, 4)], (64, 64))
    with pytest.raises(ValueError, match="cannot be fitted"):
        af.fit_anchors(boxes_on_grid(4, 0.2), object(), [(4, 4)], (64, 64))
    with pytest.raises(ValueError, match="takes no anchor_config"):
        TrainConfig(model="faster_rcnn_resnet50_c4", fit_anchors=True)
    with pytest.raises(ValueError, match="both set the anchors"):
        TrainConfig(fit_anchors=True, model_kwargs={"anchor_config": {"min_scale": 0.1}})


@pytest.mark.slow
def test_train_fit_anchors_keeps_them_in_keras_file_and_export(tmp_path):
    model_dir = tmp_path / "run"
    config = TrainConfig(
        model="ppn_mobilenet", model_kwargs={"depth_multiplier": 0.25, "predictor_depth": 32},
        dataset="glyphs", dataset_kwargs={"num_examples": 24, "image_size": 96}, fit_anchors=True,
        image_size=96, batch_size=8, epochs=1, steps_per_epoch=1, augment=False, seed=0,
        model_dir=str(model_dir), verbose=0, num_visualize=0)
    result = train(config, evaluate=False)
    saved = json.loads((model_dir / "anchor_fit.json").read_text())
    fitted = SSDAnchorGenerator.from_config(saved["fitted"])
    assert saved["after"]["matched"] > saved["before"]["matched"]
    assert fitted != SSDAnchorGenerator(min_scale=0.15, max_scale=0.95)
    model = load_model(result.model_path)
    assert model.anchor_generator == fitted == result.model.anchor_generator
    np.testing.assert_array_equal(model.anchors, fitted(model.feature_shapes, model.image_size))
    # The coverage tool on the saved model reports the fit's share.
    data = load_dataset("glyphs", "train", num_examples=24, image_size=96)
    assert np.mean(anchor_coverage(model, data).best_iou >= 0.5) == pytest.approx(saved["after"]["matched"])

    # With zero box codes every exported detection is one of the fitted anchors (clipped, in pixels).
    for weight in model.head.box_conv.weights:
        weight.assign(tf.zeros_like(weight))
    path = str(tmp_path / "saved_model")
    export.export_saved_model(model, path)
    images = np.full((1, 96, 96, 3), 128, np.uint8)
    boxes = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))["boxes"]
    boxes = np.asarray(boxes)[0] / 96.0
    boxes = boxes[(boxes[:, 2] > boxes[:, 0])]
    anchors = np.clip(model.anchors, 0, 1)
    assert len(boxes) and all(np.abs(anchors - box).max(axis=1).min() < 1e-4 for box in boxes)


def test_anchors_command_fit_prints_coverage_before_and_after(tmp_path, capsys):
    from keras_pyramids import cli

    code = cli.main(["anchors", "--model", "ppn_mobilenet", "--image-size", "96", "--model-kwargs",
                     json.dumps({"depth_multiplier": 0.25, "predictor_depth": 16}), "--dataset", "glyphs",
                     "--dataset-kwargs", json.dumps({"num_examples": 12, "image_size": 96}), "--fit", "--quiet",
                     "--plot", str(tmp_path / "coverage.png")])
    out = capsys.readouterr().out
    assert code == 0 and "model's anchors:" in out and "fitted settings: min_scale=" in out
    fitted = float(out.split("fitted anchors:")[1].split("%")[0])
    table = float(out.split("\n  all")[1].split("%")[0].split()[-1])
    assert table == pytest.approx(fitted, abs=0.51)  # the coverage table is of the fitted anchors


def test_large_box_sets_are_fitted_on_a_fixed_sample():
    boxes = np.concatenate([boxes_on_grid(8, 0.1)] * 40)  # 2560 boxes
    start = SSDAnchorGenerator(min_scale=0.3, max_scale=0.3, aspect_ratios=(1.0,), interpolated_scale_aspect_ratio=0)
    fit = af.fit_anchors(boxes, start, [(8, 8)], (64, 64), max_boxes=500)
    assert fit.num_boxes == 500 and fit.after.matched == 1.0
    assert fit.generator == af.fit_anchors(boxes, start, [(8, 8)], (64, 64), max_boxes=500).generator
