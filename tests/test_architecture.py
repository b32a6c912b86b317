"""The detector structure: one owner per setting, named parts composed freely, model kinds, experiment configs."""

import glob
import json
import os

import numpy as np
import pytest

import keras_pyramids as kp
from keras_pyramids import cli
from keras_pyramids.backbones import level_stride
from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.models.single_shot import SingleShotDetector
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.registry import model_kind
from keras_pyramids.training.config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PPN = dict(num_classes=3, image_size=64, depth_multiplier=0.25)


def test_scale_factors_have_one_owner():
    # Before: accepted here, then targets encoded with (10, 10, 5, 5) and decoded with (1, 1, 1, 1).
    with pytest.raises(ValueError, match="box coder owns it.*label_encoder"):
        kp.build_model("ppn_mobilenet", postprocess={"scale_factors": (1, 1, 1, 1)}, **SMALL_PPN)
    model = kp.build_model("ppn_mobilenet", label_encoder={"box_coder": {"scale_factors": [1, 1, 1, 1]}},
                           **SMALL_PPN)
    assert model.box_coder.scale_factors == (1.0, 1.0, 1.0, 1.0)
    box = np.array([[0.2, 0.3, 0.7, 0.6]], np.float32)
    targets = model.target_assigner()(box, np.array([2]))
    matched = np.flatnonzero(targets["classes"].numpy() == 2)
    assert matched.size > 0
    # Perfect predictions (the targets themselves) decode back to the box: encoding and decoding agree.
    logits = np.full((1, model.num_anchors, 3), -10.0, np.float32)
    logits[0, matched, 2] = 10.0
    decoded = model.decode({"boxes": targets["boxes"].numpy()[None], "classes": logits})
    np.testing.assert_allclose(np.asarray(decoded["boxes"])[0, matched], np.repeat(box, matched.size, 0), atol=1e-5)


def test_anchor_settings_from_json_build():
    # Before: AttributeError: 'dict' object has no attribute 'scales'.
    model = kp.build_model("ppn_mobilenet", anchor_config={"min_scale": 0.1, "max_scale": 0.9}, **SMALL_PPN)
    expected = SSDAnchorGenerator(min_scale=0.1, max_scale=0.9)(model.feature_shapes, model.image_size)
    np.testing.assert_array_equal(model.anchors, expected)
    with pytest.raises(ValueError, match="Unknown anchor setting.*min_scal\\b"):
        kp.build_model("ppn_mobilenet", anchor_config={"min_scal": 0.1}, **SMALL_PPN)
    with pytest.raises(ValueError, match="Unknown postprocess setting.*'iou'.*did you mean 'iou_threshold'"):
        kp.build_model("ppn_mobilenet", postprocess={"iou": 0.5}, **SMALL_PPN)


def test_training_a_classifier_as_a_detector_is_a_named_error(capsys, tmp_path):
    # Before: a TypeError traceback once the data was loaded.
    assert model_kind("sppnet_zf5") == "classifier" and model_kind("ppn_mobilenet") == "detector"
    assert "sppnet_zf5" not in kp.list_models("detector") and "sppnet_zf5" in kp.list_models("classifier")
    code = cli.main(["train", "--model", "sppnet_zf5", "--model-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "sppnet_zf5 is a classifier, not a detector" in err
    assert not os.path.exists(tmp_path / "run")


def test_level_keys_give_strides():
    assert level_stride("C3") == 8 and level_stride("C5") == 32
    with pytest.raises(ValueError, match="Unknown level key 'P3'"):
        level_stride("P3")


def test_named_errors_for_unknown_parts_levels_and_sizes():
    with pytest.raises(ValueError, match="Unknown backbone 'mobilenet'.*Did you mean 'mobilenet_v1'"):
        build_single_shot_detector("mobilenet", "ppn", "shared", num_classes=2, image_size=64)
    with pytest.raises(ValueError, match="Unknown neck 'fpm'"):
        build_single_shot_detector("mobilenet_v1", "fpm", "shared", num_classes=2, image_size=64)
    with pytest.raises(ValueError, match="Unknown head"):
        build_single_shot_detector("mobilenet_v1", "ppn", "shard", num_classes=2, image_size=64)
    with pytest.raises(ValueError, match="Unknown MobileNet v1 level"):
        build_single_shot_detector("mobilenet_v1", "ppn", "shared", num_classes=2, image_size=64, levels=("C6",))
    with pytest.raises(ValueError, match="Unknown level key 'conv4_3'"):
        build_single_shot_detector("vgg16", "ppn", "shared", num_classes=2, image_size=64, levels=("conv4_3",))
    with pytest.raises(ValueError, match="multiples of 16"):
        build_single_shot_detector("vgg16", "mlfpn", "per_level", num_classes=2, image_size=200,
                                   backbone_kwargs={"width_multiplier": 0.125})


def test_ppn_pyramid_on_vgg_with_per_level_head_trains_a_step():
    model = build_single_shot_detector(
        "vgg16", "ppn", "per_level", num_classes=2, image_size=64, levels=("C3",),
        backbone_kwargs={"width_multiplier": 0.125}, neck_kwargs={"num_levels": 3},
    )
    assert isinstance(model, SingleShotDetector) and model.name == "ppn_vgg16"
    assert model.feature_shapes == [(8, 8), (4, 4), (2, 2)]
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assigner = model.target_assigner()
    targets = [assigner(np.array([[0.1, 0.1, 0.6, 0.5]], np.float32), np.array([1])) for _ in range(2)]
    batch = {k: np.stack([t[k].numpy() for t in targets]) for k in ("boxes", "classes")}
    model.compile(optimizer="adam", jit_compile=False)
    logs = model.train_on_batch(images, batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["box_loss"] > 0


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "experiments", "*.json"))),
                         ids=os.path.basename)
def test_every_experiment_config_builds_through_its_factory(path):
    with open(path) as f:
        config = TrainConfig.from_dict(json.load(f))
    # ImageNet weights would download: the architecture is the same without them.
    kwargs = {k: v for k, v in config.model_kwargs.items() if k != "backbone_weights"}
    model = kp.build_model(config.model, num_classes=5, image_size=config.image_size, **kwargs)
    assert model.num_classes == 5 and model.kind == "detector"
    assert model.image_size == tuple(np.broadcast_to(config.image_size, 2))


def test_fpn_and_retinanet_head_on_mobilenet_train_a_step():
    # A combination no paper used: RetinaNet's neck and head on MobileNet v1.
    model = build_single_shot_detector(
        "mobilenet_v1", "fpn", "retinanet", num_classes=2, image_size=128,
        backbone_kwargs={"depth_multiplier": 0.25}, neck_kwargs={"depth": 32}, head_kwargs={"depth": 32},
    )
    assert model.feature_shapes == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert model.anchor_generator.get_config()["min_level"] == 3 and model.num_anchors == 9 * 341
    images = np.random.default_rng(1).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    assigner = model.target_assigner()
    targets = [assigner(np.array([[0.2, 0.2, 0.5, 0.6]], np.float32), np.array([0])) for _ in range(2)]
    batch = {k: np.stack([t[k].numpy() for t in targets]) for k in ("boxes", "classes")}
    model.compile(optimizer="adam", jit_compile=False)
    logs = model.train_on_batch(images, batch, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["box_loss"] > 0
    with pytest.raises(ValueError, match="multiples of 32"):
        build_single_shot_detector("mobilenet_v1", "fpn", "retinanet", num_classes=2, image_size=100,
                                   backbone_kwargs={"depth_multiplier": 0.25})


def _one_step(model, box=(0.2, 0.2, 0.6, 0.7)):
    images = np.random.default_rng(2).uniform(0, 255, (2, *model.image_size, 3)).astype(np.float32)
    assigner = model.target_assigner()
    targets = [assigner(np.array([box], np.float32), np.array([0])) for _ in range(2)]
    batch = {k: np.stack([t[k].numpy() for t in targets]) for k in ("boxes", "classes")}
    model.compile(optimizer="adam", jit_compile=False)
    return model.train_on_batch(images, batch, return_dict=True)


@pytest.mark.slow
def test_ppn_pooling_pyramid_on_resnet50_trains_a_step():
    model = build_single_shot_detector("resnet50", "ppn", "shared", num_classes=2, image_size=64,
                                       neck_kwargs={"num_levels": 3}, head_kwargs={"depth": 32})
    assert model.feature_shapes == [(4, 4), (2, 2), (1, 1)] and model.name == "ppn_resnet50"
    assert model.backbone.output["C4"].shape[-1] == 1024
    logs = _one_step(model)
    assert np.isfinite(logs["loss"]) and logs["class_loss"] > 0


@pytest.mark.slow
def test_mlfpn_on_resnet50_trains_a_step():
    model = build_single_shot_detector(
        "resnet50", "mlfpn", "per_level", num_classes=2, image_size=160,
        neck_kwargs={"num_levels": 1, "tum_channels": 16, "num_scales": 4},
        head_kwargs={"kernel_size": 3},
    )
    assert model.feature_shapes == [(20, 20), (10, 10), (5, 5), (3, 3)]
    logs = _one_step(model)
    assert np.isfinite(logs["loss"])
