"""RetinaNet factories: detectron2's parameter count, the paper's settings, a train step, .keras round trip."""

import numpy as np
import pytest

import keras_pyramids as kp
from keras_pyramids.ops.anchors import FPNAnchorGenerator
from keras_pyramids.saving import load_model

SMALL = dict(num_classes=3, image_size=128, fpn_depth=16, head_depth=16)


def non_batch_norm_parameters(model):
    """Every variable except batch-norm gamma/beta/moving statistics (how detectron2's count is quoted)."""
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    return sum(int(np.prod(v.shape)) for v in model.weights if not v.path.endswith(names))


def test_resnet50_fpn_has_detectron2s_parameter_count():
    model = kp.build_model("retinanet_resnet50_fpn", num_classes=80, image_size=128)
    assert non_batch_norm_parameters(model.backbone) == 23_454_912
    assert non_batch_norm_parameters(model) == 37_915_572


def test_resnet101_fpn_parameter_count():
    model = kp.build_model("retinanet_resnet101_fpn", num_classes=80, image_size=128)
    # ResNet-101 has 17 more conv4 bottlenecks (1x1 1024->256, 3x3 256->256, 1x1 256->1024, no biases).
    extra = 17 * (1024 * 256 + 9 * 256 * 256 + 256 * 1024)
    assert non_batch_norm_parameters(model) == 37_915_572 + extra == 56_855_476


def test_paper_settings():
    model = kp.build_model("retinanet_resnet50_fpn", **SMALL)
    assert model.anchor_generator == FPNAnchorGenerator(min_level=3, max_level=7)
    assert model.feature_shapes == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert model.num_anchors == 9 * (256 + 64 + 16 + 4 + 1)
    encoder = model.label_encoder
    assert (encoder.matched_threshold, encoder.unmatched_threshold, encoder.force_match) == (0.5, 0.4, True)
    assert model.box_coder.scale_factors == (1.0, 1.0, 1.0, 1.0)
    loss = model.loss_config
    assert (loss.focal_alpha, loss.focal_gamma, loss.smooth_l1_beta) == (0.25, 2.0, 0.1)
    post = model.postprocessor
    assert (post.score_threshold, post.iou_threshold, post.pre_nms_top_k_per_level, post.max_detections) == (
        0.05, 0.5, 1000, 100)
    assert model.head.num_convs == 4 and model.head.norm is None and model.neck.extra_levels == "conv_from_input"
    # A dict setting updates RetinaNet's defaults rather than replacing them.
    model = kp.build_model("retinanet_resnet50_fpn", label_encoder={"matched_threshold": 0.6},
                           postprocess={"max_detections": 10}, extra_levels="conv_from_output", **SMALL)
    assert (model.label_encoder.matched_threshold, model.label_encoder.unmatched_threshold) == (0.6, 0.4)
    assert model.box_coder.scale_factors == (1.0,) * 4
    assert (model.postprocessor.max_detections, model.postprocessor.score_threshold) == (10, 0.05)
    assert model.neck.extra_levels == "conv_from_output"


def test_bad_settings_are_named_errors():
    with pytest.raises(ValueError, match="multiples of 32"):
        kp.build_model("retinanet_resnet50_fpn", num_classes=3, image_size=100)
    with pytest.raises(ValueError, match="extra_levels must be one of"):
        kp.build_model("retinanet_resnet50_fpn", extra_levels="p5", **SMALL)


@pytest.mark.slow
def test_train_step_then_keras_round_trip(tmp_path):
    model = kp.build_model("retinanet_resnet50_fpn", **SMALL)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    assigner = model.target_assigner()
    boxes = np.array([[0.1, 0.2, 0.6, 0.7], [0.5, 0.5, 0.9, 0.8]], np.float32)
    targets = [assigner(boxes, np.array([0, 2])), assigner(boxes[:1], np.array([1]))]
    batch = {k: np.stack([t[k].numpy() for t in targets]) for k in ("boxes", "classes")}
    assert (batch["classes"] >= 0).sum() >= 3 and (batch["classes"] == -2).any()
    model.compile(optimizer="adam", jit_compile=False)
    logs = model.train_on_batch(images, batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["box_loss"] > 0 and logs["class_loss"] > 0

    raw = model(images, training=False)
    path = tmp_path / "retinanet.keras"
    model.save(path)
    loaded = load_model(str(path))
    again = loaded(images, training=False)
    for key in ("boxes", "classes"):
        np.testing.assert_allclose(np.asarray(again[key]), np.asarray(raw[key]), rtol=1e-4, atol=1e-4)
    assert loaded.anchor_generator == model.anchor_generator
    assert loaded.loss_config == model.loss_config and loaded.box_coder == model.box_coder
    detections = loaded.predict(images, verbose=0)
    assert detections["boxes"].shape == (2, 100, 4)
