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
