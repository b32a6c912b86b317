"""Argmax matcher: assigns each anchor to the ground-truth box it overlaps most.

As in the TF Object Detection API's ``ArgMaxMatcher`` used by the PPN and SSD
configs (``matched_threshold=0.5``, ``unmatched_threshold=0.5``,
``force_match_for_each_row=True``): an anchor whose best IoU is at least
``matched_threshold`` is matched to that box, below ``unmatched_threshold`` it
is background, in between it is ignored; then every ground-truth box takes its
single best anchor even if that IoU is low (SSD section 2.2 "Matching
strategy"), so no object goes without a positive.

Written with TensorFlow ops because it runs inside the ``tf.data`` pipeline.
"""

import tensorflow as tf

BACKGROUND = -1
IGNORE = -2


def argmax_match(iou, matched_threshold=0.5, unmatched_threshold=0.5, force_match=True):
    """Matches anchors (columns) to ground truth (rows).

    Args:
        iou: ``[M, N]`` IoU between ``M`` ground-truth boxes and ``N`` anchors;
            ``M`` may be 0.
        matched_threshold, unmatched_threshold: see module docstring;
            ``unmatched_threshold <= matched_threshold``.
        force_match: give every ground-truth box its best anchor.

    Returns:
        int32 ``[N]``: index of the matched ground-truth box, or
        :data:`BACKGROUND` (-1), or :data:`IGNORE` (-2).
    """
    if unmatched_threshold > matched_threshold:
        raise ValueError(
            f"unmatched_threshold ({unmatched_threshold}) must not exceed "
            f"matched_threshold ({matched_threshold})."
        )
    iou = tf.convert_to_tensor(iou, tf.float32)
    num_gt = tf.shape(iou)[0]
    num_anchors = tf.shape(iou)[1]

    def no_gt():
        return tf.fill([num_anchors], tf.constant(BACKGROUND, tf.int32))

    def with_gt():
        matches = tf.argmax(iou, axis=0, output_type=tf.int32)
        best = tf.reduce_max(iou, axis=0)
        matches = tf.where(best < matched_threshold, IGNORE, matches)
        matches = tf.where(best < unmatched_threshold, BACKGROUND, matches)
        if force_match:
            best_anchor = tf.argmax(iou, axis=1, output_type=tf.int32)  # [M]
            forced = tf.one_hot(best_anchor, num_anchors, dtype=tf.int32)  # [M, N]
            # When several boxes pick the same anchor, the lowest box index
            # wins, as in the reference.
            forced_gt = tf.argmax(forced, axis=0, output_type=tf.int32)
            is_forced = tf.reduce_max(forced, axis=0) > 0
            matches = tf.where(is_forced, forced_gt, matches)
        return matches

    return tf.cond(num_gt > 0, with_gt, no_gt)


def batched_argmax_match(iou, gt_valid, matched_threshold, unmatched_threshold, allow_low_quality_matches=False):
    """:func:`argmax_match` for a batch of padded ground truth, with detectron2's low-quality rule.

    Runs in the train step on static shapes (the two-stage targets depend on
    the network's own proposals, so they cannot be computed in ``tf.data``).
    Padded ground-truth rows (``gt_valid`` False) are never matched; an image
    without valid boxes is all background.

    With ``allow_low_quality_matches`` (detectron2 ``Matcher``, Faster R-CNN
    section 3.1.2 condition (i)), every anchor whose IoU with some box equals
    that box's highest IoU (ties included) is positive even below
    ``matched_threshold``; it keeps the index of the box it overlaps most, as in
    detectron2 (the TF Object Detection API's ``force_match`` of
    :func:`argmax_match` reassigns one anchor per box instead). Boxes whose
    best IoU is 0 create no match (detectron2 would mark every anchor with
    IoU 0 positive then).

    Args:
        iou: ``[B, M, N]`` IoU of ``M`` (padded) ground-truth boxes with ``N``
            anchors or proposals; ``M`` and ``N`` static.
        gt_valid: bool ``[B, M]``.
        matched_threshold, unmatched_threshold: IoU >= ``matched_threshold``
            matches, < ``unmatched_threshold`` is background, in between is
            ignored.

    Returns:
        int32 ``[B, N]``: matched box index, :data:`BACKGROUND` or :data:`IGNORE`.
    """
    if unmatched_threshold > matched_threshold:
        raise ValueError(
            f"unmatched_threshold ({unmatched_threshold}) must not exceed "
            f"matched_threshold ({matched_threshold})."
        )
    iou = tf.convert_to_tensor(iou, tf.float32)
    gt_valid = tf.convert_to_tensor(gt_valid, tf.bool)
    if iou.shape[1] == 0:
        return tf.fill(tf.shape(iou)[::2], tf.constant(BACKGROUND, tf.int32))
    # Padded boxes overlap nothing: -1 is below every threshold.
    iou = tf.where(gt_valid[:, :, None], iou, -1.0)
    best = tf.reduce_max(iou, axis=1)
    best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)
    matches = tf.where(best < matched_threshold, IGNORE, best_gt)
    matches = tf.where(best < unmatched_threshold, BACKGROUND, matches)
    if allow_low_quality_matches:
        best_per_gt = tf.reduce_max(iou, axis=2, keepdims=True)  # [B, M, 1]
        is_best = tf.logical_and(tf.equal(iou, best_per_gt), best_per_gt > 0.0)
        matches = tf.where(tf.reduce_any(is_best, axis=1), best_gt, matches)
    return matches
