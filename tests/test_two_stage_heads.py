"""RPN and Fast R-CNN box heads: shapes, detectron2's parameter counts, initialisation, config round trip."""

import keras
import numpy as np

from keras_pyramids.heads.fast_rcnn import FastRCNNBoxHead
from keras_pyramids.heads.rpn import RPNHead


def count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.weights)


def test_rpn_head_shapes_count_and_init():
    head = RPNHead(num_anchors=3, depth=256)
    maps = [keras.Input((16, 16, 256)), keras.Input((8, 8, 256)), keras.Input((4, 4, 256))]
    out = head(maps)
    assert tuple(out["boxes"].shape) == (None, 3 * (256 + 64 + 16), 4)
    assert tuple(out["classes"].shape) == (None, 3 * (256 + 64 + 16), 1)
    # detectron2 StandardRPNHead on FPN: 3x3 conv 256->256 + objectness 256->3 + deltas 256->12.
    assert count(head) == (9 * 256 * 256 + 256) + (256 * 3 + 3) + (256 * 12 + 12) == 593_935
    np.testing.assert_array_equal(head.class_conv.bias.numpy(), 0.0)
    assert abs(float(np.std(head.conv.kernel.numpy())) - 0.01) < 0.001
    clone = RPNHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()


def test_fpn_box_head_shapes_and_count():
    head = FastRCNNBoxHead(num_classes=80, fc_dims=(1024, 1024))
    out = head(keras.Input((512, 7, 7, 256), batch_size=2))
    assert tuple(out["classes"].shape) == (2, 512, 81) and tuple(out["boxes"].shape) == (2, 512, 80, 4)
    # detectron2 FastRCNNConvFCHead (2 fc 1024 on 7x7x256) + FastRCNNOutputLayers (81 scores, 80x4 deltas).
    assert count(head) == (12544 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 81 + 81) + (1024 * 320 + 320)
    assert count(head) == 14_306_705
    assert abs(float(np.std(head.box_deltas.kernel.numpy())) - 0.001) < 0.0002


def test_c4_box_head_on_pooled_vectors():
    head = FastRCNNBoxHead(num_classes=3, fc_dims=())
    features = np.random.default_rng(0).normal(size=(2, 5, 2048)).astype(np.float32)
    out = head(features)
    assert out["classes"].shape == (2, 5, 4) and out["boxes"].shape == (2, 5, 3, 4)
    assert count(head) == 2048 * 4 + 4 + 2048 * 12 + 12
    # Each RoI is classified on its own: permuting RoIs permutes the outputs.
    flipped = head(features[:, ::-1])
    np.testing.assert_allclose(np.asarray(flipped["classes"])[:, ::-1], np.asarray(out["classes"]), rtol=1e-5)
