"""POD networks: GSL variants of the ResNet detectors, scale statistics, the FD rebuild and the weight transfer."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids import build_model, export
from keras_pyramids.data import load_dataset
from keras_pyramids.pod import (
    decompose_scale,
    fast_deployment_model,
    format_decomposition,
    format_scale_table,
    gsl_layer_names,
    gsl_layers,
    mean_scales,
    scale_statistics,
    transfer_weights,
)

TINY = dict(num_classes=2, image_size=64, backbone_width=0.125, fpn_depth=16, head_depth=16, num_head_convs=1)
IMAGES = np.random.default_rng(3).uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")


def _flat(outputs):
    return [np.asarray(t, "float32") for t in keras.tree.flatten(outputs)]


def _assert_same_outputs(a, b, atol=1e-4):
    for x, y in zip(_flat(a), _flat(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)


def _set_scales(model, scales):
    """Makes every GSL layer predict ``scales[i % len(scales)]`` for any image."""
    for i, layer in enumerate(gsl_layers(model)):
        layer.scale_predictor.bias.assign(np.log(np.asarray(scales[i % len(scales)], "float32")))


@pytest.fixture(scope="module")
def gsl():
    return build_model("retinanet_resnet50_fpn", pod="gsl", **TINY)


def test_gsl_variant_swaps_the_conv3_to_conv5_3x3s_and_starts_as_the_baseline(gsl):
    base = build_model("retinanet_resnet50_fpn", **TINY)
    _set_scales(gsl, [(1, 1)])
    assert gsl.name == "retinanet_resnet50_fpn_gsl"
    assert [layer.name for layer in gsl_layers(gsl)] == gsl_layer_names(50)
    assert len(gsl_layer_names(50)) == 4 + 6 + 3 and len(gsl_layer_names(101)) == 4 + 23 + 3
    base_weights = {v.path: v for v in base.weights}
    extra = [v.path for v in gsl.weights if v.path not in base_weights]
    assert len(extra) == 2 * 13 and all("/scale_predictor/" in path for path in extra)
    for variable in gsl.weights:
        if variable.path in base_weights:
            variable.assign(base_weights[variable.path])
    _assert_same_outputs(gsl(IMAGES), base(IMAGES), atol=1e-5)


def test_c4_gsl_learns_conv5_in_the_box_head():
    model = build_model("faster_rcnn_resnet50_c4", num_classes=2, image_size=64, backbone_width=0.125, pod="gsl",
                        proposals={"test_pre_nms_top_k": 64, "test_post_nms_top_k": 16})
    assert model.name == "faster_rcnn_resnet50_c4_gsl"
    paths = [v.path for v in model.weights if v.path.endswith("_2_conv/scale_predictor/bias")]
    assert len(paths) == 13 and sum(path.startswith("res5_head/") for path in paths) == 3
    # The FD-WT rebuild reaches the head's conv5 too (rebuilt from its config, the head's stage is built
    # outside the head's name scope: weights find their source by layer name).
    pairs = [(1, 2), (2, 1), (3, 3)]
    _set_scales(model, pairs)
    fd = fast_deployment_model(model, {layer.name: pairs[i % 3] for i, layer in enumerate(gsl_layers(model))})
    transfer_weights(model, fd)
    _assert_same_outputs(fd(IMAGES[:1], training=False), model(IMAGES[:1], training=False))


def test_pod_option_errors_name_the_problem():
    with pytest.raises(ValueError, match="pod must be None"):
        build_model("retinanet_resnet50_fpn", pod="fd", **TINY)
    with pytest.raises(ValueError, match="unknown layer 'conv4_block9_2_conv'"):
        build_model("retinanet_resnet50_fpn", pod={"scales": {"conv4_block9_2_conv": [1, 2]}}, **TINY)
    with pytest.raises(ValueError, match=r"\[d_h, d_w\]"):
        build_model("retinanet_resnet50_fpn", pod={"scales": {"conv4_block1_2_conv": [1]}}, **TINY)


def test_integral_scales_fd_wt_gives_the_gsl_outputs_and_saves(gsl, tmp_path):
    _set_scales(gsl, [(1, 2), (2, 1), (3, 3), (2, 2), (1, 1)])
    data = load_dataset("shapes", "train", num_examples=3, image_size=64)
    stats = scale_statistics(gsl, data.examples, num_images=3, batch_size=3)
    assert stats["num_images"] == 3 and list(stats["layers"]) == gsl_layer_names(50)
    r43 = stats["layers"]["conv4_block3_2_conv"]  # the 7th GSL layer: (2, 1)
    assert r43["samples"] == 3 and r43["d_h"]["mean"] == pytest.approx(2) and r43["d_w"]["mean"] == pytest.approx(1)
    assert r43["d_h"]["std"] < 1e-6
    json.dumps(stats)
    table = format_scale_table(stats)
    header = table.splitlines()[1].split()
    assert header[-6:] == ["R31", "R34", "R41", "R46", "R51", "R53"] and "2.00 ± 0.00" in table
    scales = mean_scales(stats)

    fd = fast_deployment_model(gsl, scales)
    assert fd.name == "retinanet_resnet50_fpn_fd" and not gsl_layers(fd)
    report = transfer_weights(gsl, fd)
    assert len(report.unused) == 26 and all("/scale_predictor/" in path for path in report.unused)
    _assert_same_outputs(fd(IMAGES), gsl(IMAGES))
    # The registry builds the same FD network from the option (fine-tuning with --init-from needs that).
    rebuilt = build_model("retinanet_resnet50_fpn", pod={"scales": scales}, **TINY)
    assert [(v.path, v.shape) for v in rebuilt.weights] == [(v.path, v.shape) for v in fd.weights]
    path = str(tmp_path / "fd.keras")  # the GSL model's round trip: tests/test_pod_cli.py
    fd.save(path)
    _assert_same_outputs(keras.saving.load_model(path)(IMAGES), fd(IMAGES), atol=1e-6)


def test_fractional_scales_split_the_kernel_by_channels_and_taps(gsl):
    scales = {name: [1.0, 1.0] for name in gsl_layer_names(50)}
    scales["conv3_block1_2_conv"] = [1.7, 2.9]  # Fig. 3: 3x3 (1, 2) + 3x3 (2, 3)
    scales["conv5_block3_2_conv"] = [0.46, 1.7]  # 1x3 (-, 1) + 3x3 (1, 2)
    fd = fast_deployment_model(gsl, scales)
    report = transfer_weights(gsl, fd)
    assert len(report.split) == 4
    weights = {v.path: np.asarray(v) for v in gsl.weights}
    fd_weights = {v.path: np.asarray(v) for v in fd.weights}
    kernel = weights["conv3/conv3_block1/conv3_block1_2_conv/kernel"]
    lower, upper = decompose_scale(1.7, 2.9, kernel.shape[-1])
    np.testing.assert_array_equal(fd_weights["conv3/conv3_block1/conv3_block1_2_conv/lower/kernel"],
                                  kernel[..., :lower.filters])
    np.testing.assert_array_equal(fd_weights["conv3/conv3_block1/conv3_block1_2_conv/upper/kernel"],
                                  kernel[..., lower.filters:])
    kernel = weights["conv5/conv5_block3/conv5_block3_2_conv/kernel"]
    lower, upper = decompose_scale(0.46, 1.7, kernel.shape[-1])
    assert lower.kernel_size == (1, 3)
    np.testing.assert_array_equal(fd_weights["conv5/conv5_block3/conv5_block3_2_conv/lower/kernel"],
                                  kernel[1:2, :, :, :lower.filters])
    line = format_decomposition(
        {"format": "keras-pyramids pod scale statistics 1",
         "layers": {"conv3_block1_2_conv": {"d_h": {"mean": 1.7, "std": 0}, "d_w": {"mean": 2.9, "std": 0}}}},
        {"conv3_block1_2_conv": 10})
    assert line == "  R31 (1.70, 2.90)  alpha 0.80  2ch 3x3 dil (1, 2) + 8ch 3x3 dil (2, 3)"
    with pytest.raises(ValueError, match="No learnt scale for conv4_block1_2_conv"):
        fast_deployment_model(gsl, {k: v for k, v in scales.items() if k != "conv4_block1_2_conv"})
    with pytest.raises(ValueError, match="no GlobalScaleConv2D layers"):
        fast_deployment_model(fd, scales)


@pytest.mark.slow
def test_fd_network_converts_to_tflite_with_builtin_ops_only(tmp_path):
    scales = {name: [1.0, 1.0] for name in gsl_layer_names(50)}
    scales.update(conv3_block2_2_conv=[1.7, 2.9], conv4_block6_2_conv=[2.02, 1.7], conv5_block1_2_conv=[0.46, 1.0])
    fd = build_model("retinanet_resnet50_fpn", pod={"scales": scales}, **TINY)
    # nms="outside": no custom op in the file, and the converter (built-in ops only) refuses anything else.
    path = export.export_tflite(fd, str(tmp_path / "fd.tflite"), nms="outside")
    interpreter = tf.lite.Interpreter(model_path=path)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    assert not ops & {"GATHER", "GATHER_ND"}
    images = IMAGES.astype("uint8")
    actual = interpreter.get_signature_runner("serving_default")(images=images)
    expected = export.decode_in_graph(fd, tf.constant(images))
    assert set(actual) == set(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], np.asarray(expected[key]), rtol=1e-3, atol=1e-4)
