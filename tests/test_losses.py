import numpy as np
import pytest

from keras_pyramids.ops.losses import (
    LossConfig,
    class_scores,
    detection_loss,
    focal_loss,
    hard_negative_softmax_loss,
    smooth_l1_loss,
)


def test_focal_loss_hand_worked():
    # One class, logit 0 (p = 0.5): positive -> alpha (1-p)^2 (-log p), background ->
    # (1 - alpha) p^2 (-log(1 - p)), ignored -> 0.
    loss = np.asarray(focal_loss(np.array([[0, -1, -2]]), np.zeros((1, 3, 1), np.float32), 1))
    log2 = np.log(2.0)
    np.testing.assert_allclose(loss, [[0.25 * 0.25 * log2, 0.75 * 0.25 * log2, 0.0]], rtol=1e-5)


def test_focal_loss_sums_over_classes():
    one = np.asarray(focal_loss(np.array([[-1]]), np.zeros((1, 1, 1), np.float32), 1))
    three = np.asarray(focal_loss(np.array([[-1]]), np.zeros((1, 1, 3), np.float32), 3))
    np.testing.assert_allclose(three, 3 * one, rtol=1e-5)


def test_smooth_l1_hand_worked():
    targets = np.array([[[3.0, 0.0, 0.0, 0.5], [9.0, 9.0, 9.0, 9.0]]], np.float32)
    loss = np.asarray(smooth_l1_loss(targets, np.zeros_like(targets), np.array([[2, -1]])))
    np.testing.assert_allclose(loss, [[2.5 + 0.125, 0.0]], rtol=1e-6)
    # detectron2's RetinaNet beta 0.1: |3| - 0.05, and 0.5 * 0.05^2 / 0.1 below the transition.
    targets = np.array([[[3.0, 0.0, 0.0, 0.05]]], np.float32)
    loss = np.asarray(smooth_l1_loss(targets, np.zeros_like(targets), np.array([[0]]), beta=0.1))
    np.testing.assert_allclose(loss, [[2.95 + 0.0125]], rtol=1e-5)
    with pytest.raises(ValueError, match="smooth_l1_beta must be > 0"):
        LossConfig(smooth_l1_beta=0.0)


def test_total_is_normalised_by_matches():
    targets = {
        "boxes": np.array([[[3.0, 0, 0, 0.5], [3.0, 0, 0, 0.5], [0, 0, 0, 0]]], np.float32),
        "classes": np.array([[0, 0, -1]]),
    }
    outputs = {"boxes": np.zeros((1, 3, 4), np.float32), "classes": np.zeros((1, 3, 1), np.float32)}
    config = LossConfig(localization_weight=2.0, normalize_box_loss_by_code_size=False)
    total, box, cls = (float(v) for v in detection_loss(targets, outputs, 1, config))
    log2 = np.log(2.0)
    np.testing.assert_allclose(box, 2.0 * (2 * 2.625) / 2, rtol=1e-5)
    np.testing.assert_allclose(cls, (2 * 0.0625 * log2 + 0.1875 * log2) / 2, rtol=1e-5)
    np.testing.assert_allclose(total, box + cls, rtol=1e-6)


def test_no_matches_does_not_divide_by_zero():
    targets = {"boxes": np.zeros((1, 2, 4), np.float32), "classes": np.array([[-1, -1]])}
    outputs = {"boxes": np.ones((1, 2, 4), np.float32), "classes": np.zeros((1, 2, 2), np.float32)}
    total, box, _ = detection_loss(targets, outputs, 2)
    assert float(box) == 0.0 and np.isfinite(float(total))


# -- the references' numbers, computed in numpy --------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _huber(diff):
    a = np.abs(diff)
    return np.where(a <= 1.0, 0.5 * a * a, a - 0.5)


def _random_batch(num_classes, batch=2, anchors=12, seed=0):
    """Targets with positives, background and ignored anchors, and random raw outputs."""
    rng = np.random.default_rng(seed)
    classes = rng.choice([-2, -1, -1, -1] + list(range(num_classes)), size=(batch, anchors)).astype(np.int32)
    classes[:, 0] = 0  # every image has a positive
    codes = rng.normal(0, 1, (batch, anchors, 4)).astype(np.float32) * (classes >= 0)[..., None]
    predicted = rng.normal(0, 1.5, (batch, anchors, 4)).astype(np.float32)
    return {"boxes": codes, "classes": classes}, predicted, rng


def od_api_ssd_loss(targets, box_codes, logits_with_background, alpha, gamma, cls_weight, loc_weight):
    """The TF OD API's SSD loss (ssd_meta_arch.loss) for the PPN / SSD MobileNet configs.

    ``encode_background_as_zeros``: the class targets have C + 1 columns, background
    first, and an unmatched anchor's target is all zeros; ignored anchors weigh 0.
    SigmoidFocalClassificationLoss over every column, WeightedSmoothL1 summed over
    codes on matched anchors, normalizer max(matches, 1), the box loss also divided
    by the code size 4 (normalize_loc_loss_by_codesize).
    """
    classes = targets["classes"]
    num_logits = logits_with_background.shape[-1]
    onehot = np.zeros(classes.shape + (num_logits,), np.float64)
    for index in np.argwhere(classes >= 0):
        onehot[tuple(index) + (classes[tuple(index)] + 1,)] = 1.0
    weights = (classes >= -1).astype(np.float64)[..., None]
    x = logits_with_background.astype(np.float64)
    p = _sigmoid(x)
    cross_entropy = np.maximum(x, 0) - x * onehot + np.log1p(np.exp(-np.abs(x)))
    p_t = onehot * p + (1 - onehot) * (1 - p)
    focal = (1 - p_t) ** gamma * (onehot * alpha + (1 - onehot) * (1 - alpha)) * cross_entropy * weights
    matched = (classes >= 0).astype(np.float64)
    box = _huber(box_codes.astype(np.float64) - targets["boxes"]).sum(-1) * matched
    normalizer = max(matched.sum(), 1.0)
    return loc_weight * box.sum() / (normalizer * 4), cls_weight * focal.sum() / normalizer


def test_sigmoid_focal_loss_equals_the_od_api_ssd_loss_of_the_ppn_config():
    from keras_pyramids.models.ppn import PPN_LOSS

    num_classes = 3
    targets, box_codes, rng = _random_batch(num_classes)
    logits = rng.normal(-1, 2, targets["classes"].shape + (num_classes,)).astype(np.float32)
    # The reference's background column is trained to 0 for every anchor; at -30
    # (where training drives it) its loss term is below 1e-25.
    with_background = np.concatenate([np.full(logits.shape[:2] + (1,), -30.0, np.float32), logits], -1)
    ref_box, ref_cls = od_api_ssd_loss(targets, box_codes, with_background, alpha=0.75, gamma=2.0,
                                       cls_weight=1.0, loc_weight=1.5)
    total, box, cls = (float(v) for v in detection_loss(targets, {"boxes": box_codes, "classes": logits},
                                                        num_classes, PPN_LOSS))
    np.testing.assert_allclose(box, ref_box, rtol=1e-5)
    np.testing.assert_allclose(cls, ref_cls, rtol=1e-5)
    np.testing.assert_allclose(total, ref_box + ref_cls, rtol=1e-5)
    # Without the code-size normalisation the box term is 4x larger (the zoo's old default).
    _, unnormalised, _ = detection_loss(targets, {"boxes": box_codes, "classes": logits}, num_classes,
                                        LossConfig(focal_alpha=0.75, localization_weight=1.5,
                                                   normalize_box_loss_by_code_size=False))
    np.testing.assert_allclose(float(unnormalised), 4 * ref_box, rtol=1e-5)


def multibox_loss(targets, box_codes, logits, negative_positive_ratio=3):
    """SSD's / M2Det's MultiBoxLoss (M2Det layers/modules/multibox_loss.py) in numpy.

    conf_t = class + 1 (0 = background); per image the background cross-entropy
    ranks the negatives, num_neg = min(ratio * num_pos, N - 1); cross-entropy summed
    over positives and mined negatives, smooth L1 summed over the codes of the
    positives; both divided by N = max(total positives, 1).
    """
    classes = targets["classes"]
    conf_t = np.where(classes >= 0, classes + 1, 0)
    x = logits.astype(np.float64)
    log_sum_exp = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    cross_entropy = log_sum_exp - np.take_along_axis(x, conf_t[..., None], -1)[..., 0]
    pos = classes >= 0
    loss_l = (_huber(box_codes.astype(np.float64) - targets["boxes"]).sum(-1) * pos).sum()
    loss_c = 0.0
    for b in range(classes.shape[0]):
        mining = np.where(pos[b], 0.0, cross_entropy[b])
        mining = np.where(classes[b] == -2, -1.0, mining)  # the zoo's ignored anchors never count
        rank = np.argsort(np.argsort(-mining, kind="stable"), kind="stable")
        num_neg = min(negative_positive_ratio * pos[b].sum(), classes.shape[1] - 1)
        neg = (rank < num_neg) & ~pos[b] & (classes[b] == -1)
        loss_c += cross_entropy[b][pos[b] | neg].sum()
    n = max(pos.sum(), 1)
    return loss_l / n, loss_c / n


def test_softmax_hard_negative_loss_equals_ssds_multibox_loss():
    from keras_pyramids.models.m2det import M2DET_LOSS

    num_classes = 3
    targets, box_codes, rng = _random_batch(num_classes, anchors=40, seed=1)
    logits = rng.normal(0, 2, targets["classes"].shape + (num_classes + 1,)).astype(np.float32)
    ref_box, ref_cls = multibox_loss(targets, box_codes, logits)
    total, box, cls = (float(v) for v in detection_loss(targets, {"boxes": box_codes, "classes": logits},
                                                        num_classes, M2DET_LOSS))
    np.testing.assert_allclose(box, ref_box, rtol=1e-5)
    np.testing.assert_allclose(cls, ref_cls, rtol=1e-5)
    # 3:1 mining: per image at most 3 negatives per positive count.
    per_anchor = np.asarray(hard_negative_softmax_loss(targets["classes"], logits, 3.0))
    for b in range(2):
        positives = (targets["classes"][b] >= 0).sum()
        assert ((per_anchor[b] > 0) & (targets["classes"][b] == -1)).sum() == min(3 * positives,
                                                                                  (targets["classes"][b] == -1).sum())
        assert np.all(per_anchor[b][targets["classes"][b] == -2] == 0)


def test_image_without_positives_mines_no_negatives():
    classes = np.array([[-1, -1, -1, -1]], np.int32)
    loss = np.asarray(hard_negative_softmax_loss(classes, np.ones((1, 4, 3), np.float32), 3.0))
    assert np.all(loss == 0)


def test_loss_owns_the_class_score_layout():
    sigmoid, softmax = LossConfig(), LossConfig(classification_loss="softmax_hard_negative")
    assert (sigmoid.num_class_logits(5), softmax.num_class_logits(5)) == (5, 6)
    logits = np.array([[[0.0, 1.0, 2.0]]], np.float32)
    np.testing.assert_allclose(np.asarray(class_scores(logits, sigmoid)), _sigmoid(logits), rtol=1e-6)
    softmax_scores = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(np.asarray(class_scores(logits, softmax)), softmax_scores[..., 1:], rtol=1e-6)
    with pytest.raises(ValueError, match="classification_loss must be one of"):
        LossConfig(classification_loss="softmax")
