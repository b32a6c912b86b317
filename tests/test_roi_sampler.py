"""RoI sampling for the box head: ground truth added, IoU 0.5 split, 25% foreground, static shapes."""

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops.box_coder import BoxCoder
from keras_pyramids.ops.roi_sampler import RoISampler

SEED = tf.constant([3, 1], tf.int32)

GT = np.array([
    [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]],
    [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
], np.float32)
GT_CLASSES = np.array([[2, 0, -1], [1, -1, -1]], np.int32)
GT_VALID = np.array([[True, True, False], [False, False, False]])
PROPOSALS = np.array([[
    [0.0, 0.0, 0.5, 0.45],   # IoU 0.9 with box 0 (class 2): foreground
    [0.5, 0.5, 0.9, 1.0],    # IoU 0.8 with box 1 (class 0): foreground
    [0.0, 0.5, 0.5, 1.0],    # IoU 0: background
    [0.2, 0.2, 0.6, 0.6],    # IoU 0.09 / 0.32 = 0.28 with box 0: background
    [0.0, 0.0, 0.5, 0.5],    # not a valid proposal (padding): never sampled
]] * 2, np.float32)
PROPOSALS_VALID = np.array([[True, True, True, True, False]] * 2)


def sample(sampler, seed=SEED, **overrides):
    args = dict(proposals=PROPOSALS, proposals_valid=PROPOSALS_VALID, gt_boxes=GT, gt_classes=GT_CLASSES,
                gt_valid=GT_VALID, seed=seed)
    args.update(overrides)
    return {k: v.numpy() for k, v in sampler.sample(**args).items()}


def key(box):
    return tuple(np.round(np.asarray(box, np.float64), 5))


def test_hand_worked_sample():
    # 8 RoIs at 25% foreground: at most 2 of the 4 foreground candidates (2 proposals, 2 boxes).
    out = sample(RoISampler(num_classes=3, num_samples=8))
    assert out["valid"].tolist() == [[True] * 4 + [False] * 4, [True] * 4 + [False] * 4]
    assert out["foreground"].tolist() == [[True, True] + [False] * 6, [False] * 8]
    # Each foreground RoI is a candidate matched to its box: class and box code from that box.
    matched_box = {key(PROPOSALS[0, 0]): 0, key(PROPOSALS[0, 1]): 1, key(GT[0, 0]): 0, key(GT[0, 1]): 1}
    for roi, cls, target in zip(out["rois"][0, :2], out["classes"][0, :2], out["box_targets"][0, :2]):
        box = matched_box[key(roi)]
        assert cls == GT_CLASSES[0, box]
        np.testing.assert_allclose(np.asarray(BoxCoder().decode(target, roi)), GT[0, box], atol=1e-5)
    assert key(out["rois"][0, 0]) != key(out["rois"][0, 1])
    # The two background RoIs are proposals 2 and 3; background is class num_classes = 3.
    assert sorted(map(key, out["rois"][0, 2:4])) == sorted(map(key, PROPOSALS[0, 2:4]))
    np.testing.assert_array_equal(out["classes"][0, 2:], 3)
    np.testing.assert_array_equal(out["box_targets"][0, 2:], 0.0)
    np.testing.assert_array_equal(out["rois"][0, 4:], 0.0)
    # No valid ground truth: the 4 valid proposals are background, nothing has a box target.
    assert sorted(map(key, out["rois"][1, :4])) == sorted(map(key, PROPOSALS[1, :4]))
    np.testing.assert_array_equal(out["classes"][1], 3)
    np.testing.assert_array_equal(out["box_targets"][1], 0.0)


def test_foreground_candidates_and_targets():
    # Room for every candidate: the 4 foreground RoIs are proposals 0, 1 and both boxes.
    out = sample(RoISampler(num_classes=3, num_samples=8, foreground_fraction=0.5))
    assert out["foreground"][0].sum() == 4 and out["valid"][0].sum() == 6
    fg = {key(r): c for r, c in zip(out["rois"][0, :4], out["classes"][0, :4])}
    assert fg == {key(PROPOSALS[0, 0]): 2, key(PROPOSALS[0, 1]): 0, key(GT[0, 0]): 2, key(GT[0, 1]): 0}
    decoded = np.asarray(BoxCoder().decode(out["box_targets"][0, :4], out["rois"][0, :4]))
    want = np.array([GT[0, 0] if c == 2 else GT[0, 1] for c in out["classes"][0, :4]])
    np.testing.assert_allclose(decoded, want, atol=1e-5)
    # Without the ground truth added, only the two proposals are foreground.
    out = sample(RoISampler(num_classes=3, num_samples=8, foreground_fraction=0.5, add_ground_truth=False))
    assert out["foreground"][0].sum() == 2 and out["valid"][0].sum() == 4


def random_proposals(rng, batch, count):
    centres = rng.uniform(0.1, 0.9, (batch, count, 2))
    sizes = rng.uniform(0.05, 0.4, (batch, count, 2))
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)


def test_quota_fill_and_zero_boxes_at_full_size():
    rng = np.random.default_rng(0)
    gt = np.zeros((3, 4, 4), np.float32)
    gt[0] = [[0.1, 0.1, 0.5, 0.5], [0.4, 0.5, 0.9, 0.9], [0.2, 0.6, 0.4, 0.8], [0, 0, 1, 1]]
    gt[1, 0] = [0.3, 0.3, 0.5, 0.5]
    valid = np.array([[True] * 4, [True, False, False, False], [False] * 4])
    proposals = random_proposals(rng, 3, 1000)
    # Image 0: many jittered copies of its boxes -> far more than 128 foreground.
    jitter = rng.normal(scale=0.01, size=(600, 4)).astype(np.float32)
    proposals[0, :600] = np.repeat(gt[0], 150, axis=0) + jitter
    sampler = RoISampler(num_classes=5)
    out = {k: v.numpy() for k, v in sampler.sample(proposals, np.ones((3, 1000), bool), gt,
                                                   np.array([[0, 1, 2, 3], [4, 0, 0, 0], [0] * 4]), valid,
                                                   SEED).items()}
    assert out["rois"].shape == (3, 512, 4) and out["classes"].shape == (3, 512)
    assert out["foreground"].sum(axis=1).tolist()[0] == 128
    assert out["valid"].sum(axis=1).tolist() == [512, 512, 512]
    # Image 1: one small box, few overlapping proposals: all of them plus the box itself.
    assert 1 <= out["foreground"][1].sum() < 128
    np.testing.assert_array_equal(out["classes"][1][out["foreground"][1]], 4)
    # Image 2: no boxes, all background.
    assert out["foreground"][2].sum() == 0
    np.testing.assert_array_equal(out["classes"][2], 5)
    # Foreground RoIs overlap their class's box by at least 0.5.
    ious = []
    for roi, cls in zip(out["rois"][0][out["foreground"][0]], out["classes"][0][out["foreground"][0]]):
        box = gt[0, cls]
        inter = max(0, min(roi[2], box[2]) - max(roi[0], box[0])) * max(0, min(roi[3], box[3]) - max(roi[1], box[1]))
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        ious.append(inter / (area(roi) + area(box) - inter))
    assert min(ious) >= 0.5 - 1e-6


def canonical(out):
    """Sampled rows of each image sorted by RoI, so samples equal up to order compare equal."""
    rows = []
    for b in range(out["rois"].shape[0]):
        keys = np.lexsort(out["rois"][b].T[::-1])
        rows.append({k: v[b][keys] for k, v in out.items()})
    return rows


def test_xla_compiled_equals_eager_up_to_order():
    sampler = RoISampler(num_classes=3, num_samples=16)
    eager = sample(sampler)
    compiled = tf.function(
        lambda p, v, s: sampler.sample(p, v, GT, GT_CLASSES, GT_VALID, s), jit_compile=True
    )(PROPOSALS, PROPOSALS_VALID, SEED)
    compiled = {k: v.numpy() for k, v in compiled.items()}
    for a, b in zip(canonical(eager), canonical(compiled)):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-6)


def test_config_round_trip_and_bad_settings():
    sampler = RoISampler(num_classes=80)
    assert RoISampler.from_config(sampler.get_config()).get_config() == sampler.get_config()
    assert sampler.box_coder == BoxCoder((10, 10, 5, 5)) and sampler.background_class == 80
    with pytest.raises(ValueError, match="num_classes"):
        RoISampler(num_classes=0)
    with pytest.raises(ValueError, match="positive_fraction"):
        RoISampler(num_classes=3, foreground_fraction=2.0)
