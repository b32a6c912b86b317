import numpy as np
import pytest

from keras_pyramids.ops.losses import LossConfig, detection_loss, focal_loss, smooth_l1_loss


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
    total, box, cls = (float(v) for v in detection_loss(targets, outputs, 1, LossConfig(localization_weight=2.0)))
    log2 = np.log(2.0)
    np.testing.assert_allclose(box, 2.0 * (2 * 2.625) / 2, rtol=1e-5)
    np.testing.assert_allclose(cls, (2 * 0.0625 * log2 + 0.1875 * log2) / 2, rtol=1e-5)
    np.testing.assert_allclose(total, box + cls, rtol=1e-6)


def test_no_matches_does_not_divide_by_zero():
    targets = {"boxes": np.zeros((1, 2, 4), np.float32), "classes": np.array([[-1, -1]])}
    outputs = {"boxes": np.ones((1, 2, 4), np.float32), "classes": np.zeros((1, 2, 2), np.float32)}
    total, box, _ = detection_loss(targets, outputs, 2)
    assert float(box) == 0.0 and np.isfinite(float(total))
