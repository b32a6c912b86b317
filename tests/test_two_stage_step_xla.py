"""The two-stage box maths chained as in a train step compile together with XLA, with 0 and many boxes."""

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops.anchors import FPNAnchorGenerator
from keras_pyramids.ops.ground_truth import GroundTruthTruncatedWarning, pad_ground_truth
from keras_pyramids.ops.proposals import generate_proposals
from keras_pyramids.ops.roi_align import roi_align
from keras_pyramids.ops.roi_sampler import RoISampler
from keras_pyramids.ops.rpn_label_encoder import RPNLabelEncoder


def test_train_step_shaped_chain_compiles_with_xla():
    image_size = (64, 64)
    shapes = [(16, 16), (8, 8)]  # P2, P3
    anchors = FPNAnchorGenerator(min_level=2, max_level=3, num_scales=1, anchor_size=8.0)(shapes, image_size)
    per_level = np.split(anchors, [16 * 16 * 3])
    rng = np.random.default_rng(0)
    maps = [tf.Variable(rng.normal(size=(2, h, w, 4)).astype(np.float32)) for h, w in shapes]
    rpn_logits = [tf.Variable(rng.normal(size=(2, len(a))).astype(np.float32)) for a in per_level]
    rpn_deltas = [tf.Variable(0.1 * rng.normal(size=(2, len(a), 4)).astype(np.float32)) for a in per_level]
    # Image 0 has 7 boxes for 5 slots (2 dropped), image 1 none.
    boxes = rng.uniform(0.1, 0.5, (7, 2))
    boxes = np.concatenate([boxes, boxes + 0.3], -1).astype(np.float32)
    with pytest.warns(GroundTruthTruncatedWarning):
        padded = [pad_ground_truth(boxes, np.arange(7) % 3, 5), pad_ground_truth(np.zeros((0, 4)), [], 5)]
    gt = {k: tf.stack([p[k] for p in padded]) for k in padded[0]}
    rpn_encoder, sampler = RPNLabelEncoder(), RoISampler(num_classes=3, num_samples=32)

    @tf.function(jit_compile=True)
    def step(seed):
        with tf.GradientTape() as tape:
            rpn = rpn_encoder.encode(anchors, gt["boxes"], gt["valid"], seed)
            proposals = generate_proposals(rpn_logits, rpn_deltas, per_level, rpn_encoder.box_coder, image_size,
                                           pre_nms_top_k=100, post_nms_top_k=50)
            rois = sampler.sample(proposals["boxes"], proposals["valid"], gt["boxes"], gt["classes"], gt["valid"],
                                  seed)
            crops = roi_align(maps, rois["rois"], image_size, (4, 8), output_size=3)
            sampled = tf.cast(rpn["objectness"] >= 0, tf.float32)
            loss = (tf.reduce_sum(tf.concat(rpn_logits, 1) * sampled)
                    + tf.reduce_sum(tf.reduce_mean(crops, axis=(2, 3, 4)) * tf.cast(rois["valid"], tf.float32)))
        grads = tape.gradient(loss, maps + rpn_logits)
        return rpn, proposals, rois, crops, grads

    rpn, proposals, rois, crops, grads = step(tf.constant([1, 2]))
    assert rpn["objectness"].shape == (2, len(anchors)) and proposals["boxes"].shape == (2, 50, 4)
    assert crops.shape == (2, 32, 3, 3, 4)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert np.abs(grads[0].numpy()).sum() > 0
    # The image without boxes: no RPN positives, background RoIs only.
    assert (rpn["objectness"].numpy()[1] == 1).sum() == 0
    assert not rois["foreground"].numpy()[1].any() and rois["valid"].numpy()[1].all()
    # The image with boxes: its 5 kept boxes (added to the proposals) give foreground RoIs.
    assert 5 <= rois["foreground"].numpy()[0].sum() <= 8
