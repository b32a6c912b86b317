"""Proposal generation against hand-worked cases and a numpy reference of the detectron2 steps."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops.box_coder import BoxCoder
from keras_pyramids.ops.proposals import ProposalGenerator, generate_proposals

RPN_CODER = BoxCoder((1, 1, 1, 1))

LEVEL_A = np.array([
    [0.1, 0.1, 0.5, 0.5],    # logit 3.0
    [0.12, 0.1, 0.52, 0.5],  # 2.0, IoU 0.905 with the first: suppressed
    [0.8, 0.8, 1.2, 1.2],    # 0.5, crosses the corner: clipped to [0.8, 0.8, 1, 1]
    [0.3, 0.3, 0.7, 0.7],    # 0.2, not among the level's top 3
], np.float32)
LEVEL_B = np.array([
    [0.1, 0.1, 0.5, 0.5],    # 2.5, the same box on another level: NMS is per level, kept
    [0.0, 0.0, 0.0, 0.3],    # 5.0, empty: dropped
    [0.3, 0.6, 0.32, 0.9],   # 1.0, 2 pixels high in a 100 x 100 image
], np.float32)
LOGITS = [np.array([[3.0, 2.0, 0.5, 0.2]], np.float32), np.array([[2.5, 5.0, 1.0]], np.float32)]
ZERO_DELTAS = [np.zeros((1, 4, 4), np.float32), np.zeros((1, 3, 4), np.float32)]


def test_hand_worked_levels_nms_clip_and_tiny_boxes():
    out = generate_proposals(LOGITS, ZERO_DELTAS, [LEVEL_A, LEVEL_B], RPN_CODER, (100, 100),
                             pre_nms_top_k=3, post_nms_top_k=6)
    np.testing.assert_allclose(out["boxes"].numpy()[0], [
        [0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.3, 0.6, 0.32, 0.9], [0.8, 0.8, 1.0, 1.0],
        [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(out["scores"].numpy()[0], [3.0, 2.5, 1.0, 0.5, 0, 0])
    assert out["valid"].numpy().tolist() == [[True] * 4 + [False] * 2]
    # min_size 3 pixels drops the 2-pixel-high box.
    out = generate_proposals(LOGITS, ZERO_DELTAS, [LEVEL_A, LEVEL_B], RPN_CODER, (100, 100),
                             pre_nms_top_k=3, post_nms_top_k=6, min_size=3)
    np.testing.assert_allclose(out["scores"].numpy()[0], [3.0, 2.5, 0.5, 0, 0, 0])
    # post_nms_top_k below the candidates keeps the best.
    out = generate_proposals(LOGITS, ZERO_DELTAS, [LEVEL_A, LEVEL_B], RPN_CODER, (100, 100),
                             pre_nms_top_k=3, post_nms_top_k=2)
    np.testing.assert_allclose(out["scores"].numpy()[0], [3.0, 2.5])


def test_huge_deltas_are_clamped_not_infinite():
    # exp(200) overflows float32; clamped at 1000 / 16, level A's boxes cover the image
    # (the best one survives, the others are suppressed by it).
    deltas = [np.zeros((1, 4, 4), np.float32), np.zeros((1, 3, 4), np.float32)]
    deltas[0][..., 2:] = 200.0
    out = generate_proposals(LOGITS, deltas, [LEVEL_A, LEVEL_B], RPN_CODER, (100, 100), 3, 6)
    assert np.isfinite(out["boxes"].numpy()).all()
    np.testing.assert_allclose(out["boxes"].numpy()[0, 0], [0, 0, 1, 1])
    np.testing.assert_allclose(out["scores"].numpy()[0, :4], [3.0, 2.5, 1.0, 0.0])


# ---- numpy reference ------------------------------------------------------------------------

def decode(deltas, anchors):
    cy, cx = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    dh = np.minimum(deltas[:, 2], math.log(1000 / 16))
    dw = np.minimum(deltas[:, 3], math.log(1000 / 16))
    ncy, ncx = cy + deltas[:, 0] * h, cx + deltas[:, 1] * w
    nh, nw = h * np.exp(dh), w * np.exp(dw)
    return np.stack([ncy - nh / 2, ncx - nw / 2, ncy + nh / 2, ncx + nw / 2], -1)


def iou(a, b):
    inter = (max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def reference(logits, deltas, anchors, image_size, pre, post, threshold, min_size):
    """One image: lists of (box, score) after the detectron2 steps, best first."""
    kept = []
    for lg, dl, an in zip(logits, deltas, anchors):
        order = np.argsort(-lg, kind="stable")[:pre]
        boxes = np.clip(decode(dl[order], an[order]), 0.0, 1.0)
        scores = lg[order]
        ok = ((boxes[:, 2] - boxes[:, 0]) * image_size[0] > min_size) & \
             ((boxes[:, 3] - boxes[:, 1]) * image_size[1] > min_size)
        selected = []
        for box, score in zip(boxes[ok], scores[ok]):
            if all(iou(box, other) <= threshold for other, _ in selected):
                selected.append((box, score))
        kept.extend(selected)
    kept.sort(key=lambda item: -item[1])
    return kept[:post]


def random_level(rng, batch, count, side):
    centres = rng.uniform(0.0, 1.0, (count, 2))
    sizes = side * rng.uniform(0.5, 2.0, (count, 2))
    anchors = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    logits = rng.normal(size=(batch, count)).astype(np.float32)
    deltas = (0.3 * rng.normal(size=(batch, count, 4))).astype(np.float32)
    return anchors, logits, deltas


def random_case(seed=0):
    rng = np.random.default_rng(seed)
    levels = [random_level(rng, 2, 150, 0.15), random_level(rng, 2, 40, 0.4)]
    anchors, logits, deltas = (list(t) for t in zip(*levels))
    return logits, deltas, anchors


def test_equals_numpy_reference():
    logits, deltas, anchors = random_case()
    out = generate_proposals(logits, deltas, anchors, RPN_CODER, (64, 96), pre_nms_top_k=60,
                             post_nms_top_k=70, nms_iou_threshold=0.5, min_size=2.0)
    for b in range(2):
        want = reference([lg[b] for lg in logits], [d[b] for d in deltas], anchors, (64, 96), 60, 70, 0.5, 2.0)
        count = int(out["valid"].numpy()[b].sum())
        assert count == len(want) and count > 20
        np.testing.assert_allclose(out["boxes"].numpy()[b, :count], np.array([w[0] for w in want]), atol=1e-5)
        np.testing.assert_allclose(out["scores"].numpy()[b, :count], [w[1] for w in want], atol=1e-6)
        assert not out["valid"].numpy()[b, count:].any()


def test_xla_compiled_equals_eager_and_layer_settings():
    logits, deltas, anchors = random_case(1)
    layer = ProposalGenerator(pre_nms_top_k=50, post_nms_top_k=40, test_pre_nms_top_k=30, test_post_nms_top_k=20)
    eager = layer(logits, deltas, anchors=anchors, box_coder=RPN_CODER, image_size=(64, 96), training=True)
    assert eager["boxes"].shape == (2, 40, 4)
    compiled = tf.function(
        lambda lg, dl: layer(lg, dl, anchors=anchors, box_coder=RPN_CODER, image_size=(64, 96), training=True),
        jit_compile=True,
    )(logits, deltas)
    for key in ("boxes", "scores", "valid"):
        np.testing.assert_allclose(compiled[key].numpy(), eager[key].numpy(), atol=1e-6)
    test = layer(logits, deltas, anchors=anchors, box_coder=RPN_CODER, image_size=(64, 96))
    assert test["boxes"].shape == (2, 20, 4)
    assert ProposalGenerator.from_config(layer.get_config()).get_config() == layer.get_config()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="anchors"):
        generate_proposals(LOGITS, ZERO_DELTAS, [LEVEL_A, LEVEL_B[:2]], RPN_CODER, (100, 100))
    with pytest.raises(ValueError, match="levels"):
        generate_proposals(LOGITS, ZERO_DELTAS, [LEVEL_A], RPN_CODER, (100, 100))
    with pytest.raises(ValueError, match="post_nms_top_k"):
        ProposalGenerator(post_nms_top_k=0)
