"""IPG-Net detectors: registered names, which stages feed the FPN, .keras round trip, the guidance cost report."""

import keras
import numpy as np
import pytest

import keras_pyramids as kp
from keras_pyramids.models import ipg as ipg_models
from keras_pyramids.report import format_report, guidance_report

TINY_RETINANET = dict(num_classes=3, backbone_width=0.125, fpn_depth=16, head_depth=16, num_head_convs=1)
SMALL_PROPOSALS = dict(pre_nms_top_k=100, post_nms_top_k=32, test_pre_nms_top_k=100, test_post_nms_top_k=32)
TINY_RCNN = dict(num_classes=3, image_size=128, backbone_width=0.125, fpn_depth=16, fc_dim=32,
                 proposals=SMALL_PROPOSALS, rois_per_image=16, max_boxes=4)


def test_registered_names():
    assert {"ipg_retinanet_resnet50_fpn", "ipg_retinanet_resnet101_fpn", "ipg_faster_rcnn_resnet50_fpn",
            "ipg_faster_rcnn_resnet101_fpn"} <= set(kp.list_models())


@pytest.mark.parametrize("num_stages, keep, retinanet, rcnn", [
    (4, False, ("C3", "C4", "C5"), ("C2", "C3", "C4", "C5")),
    (5, False, ("C3", "C4", "C5", "C6"), ("C2", "C3", "C4", "C5", "C6")),
    (6, False, ("C4", "C5", "C6", "C7"), ("C2", "C3", "C4", "C5", "C6", "C7")),
    (7, False, ("C5", "C6", "C7", "C8"), ("C2", "C3", "C4", "C5", "C6", "C7", "C8")),  # Table 5: last four
    (7, True, ("C3", "C4", "C5d"), ("C2", "C3", "C4", "C5d")),
])
def test_levels_the_fpn_reads(num_stages, keep, retinanet, rcnn):
    assert ipg_models.retinanet_levels(num_stages, keep) == retinanet
    assert ipg_models.rcnn_levels(num_stages, keep) == rcnn


def test_table5_retinanet_reads_the_last_four_of_seven_stages_and_round_trips(tmp_path):
    model = kp.build_model("ipg_retinanet_resnet50_fpn", image_size=256, **TINY_RETINANET)
    assert model.neck.input_levels == ("C5", "C6", "C7", "C8")
    assert model.feature_shapes == [(8, 8), (4, 4), (2, 2), (1, 1)]  # P5..P8, no extra level
    assert model.anchors.shape == (9 * (64 + 16 + 4 + 1), 4)
    fusions = [layer.name for layer in model.backbone.layers if "fusion" in layer.name]
    assert fusions == ["ipg_fusion_stage2", "ipg_fusion_stage3", "ipg_fusion_stage4"]
    images = np.random.default_rng(0).uniform(0, 255, (1, 256, 256, 3)).astype(np.float32)
    before = model(images)
    path = tmp_path / "ipg_retinanet.keras"
    model.save(path)
    after = keras.saving.load_model(path)(images)
    for key in before:
        np.testing.assert_array_equal(np.asarray(before[key]), np.asarray(after[key]))


def test_ipg_rcnn_has_five_stages_and_p6_from_the_fifth():
    model = kp.build_model("ipg_faster_rcnn_resnet50_fpn", **TINY_RCNN)
    assert model.backbone.ipg_settings["num_stages"] == 5 and model.backbone.ipg_settings["fusion"] == "sum"
    assert model.neck.input_levels == ("C2", "C3", "C4", "C5", "C6") and not model.neck.extra_ops
    assert model.feature_shapes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert model.anchors.shape == (3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2), 4)  # one side per level


def test_report_shows_ipg_against_its_plain_twin():
    model = kp.build_model("ipg_retinanet_resnet50_fpn", image_size=128, num_stages=4, fusion_stages=(3,),
                           **TINY_RETINANET)
    ipg = guidance_report(model, (128, 128))
    added = ipg["backbone"]["params"] - ipg["twin"]["params"]
    assert added == ipg["transformation_params"] + ipg["fusion_params"] > 0
    # Fusion at stage 3 (128 channels at width 1/8): W_s, W_m, W (1x1, bias) = 3 * (128 * 128 + 128).
    assert ipg["fusion_params"] == 3 * (128 * 128 + 128)
    assert ipg["backbone"]["flops"] > ipg["twin"]["flops"] > 0
    text = format_report({"model": "m", "image_size": [128, 128], "params": 1, "flops": 1, "ipg": ipg})
    assert "plain ResNet twin" in text and "transformation + fusion modules add" in text
