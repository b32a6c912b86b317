"""Training targets for every anchor, computed in the ``tf.data`` pipeline.

Encoding targets per example before batching keeps the train step free of
data-dependent shapes: it sees ``[B, N, 4]`` box codes and ``[B, N]`` class ids,
which is what XLA and TPUs need (DESIGN.md, "anchors, box coder and matching").
"""

import tensorflow as tf
from keras.utils import bounding_boxes

from keras_pyramids.ops import box_coder, matcher


class TargetAssigner:
    """Maps one image's ground truth to per-anchor targets.

    Args:
        anchors: ``[N, 4]`` normalised ``[ymin, xmin, ymax, xmax]`` anchors (e.g.
            ``model.anchors``).
        matched_threshold, unmatched_threshold, force_match: see
            :func:`keras_pyramids.ops.matcher.argmax_match`.
        scale_factors: box coder scale factors.

    Calling it with ``boxes [M, 4]`` (normalised yxyx) and ``classes [M]`` (int,
    ``0 .. num_classes - 1``) returns ``{"boxes": [N, 4] float32 codes,
    "classes": [N] int32}`` where ``classes`` is the class of the matched box,
    ``-1`` for background and ``-2`` for ignored anchors. Box codes of unmatched
    anchors are zeros (they get no box loss).
    """

    def __init__(
        self,
        anchors,
        matched_threshold=0.5,
        unmatched_threshold=0.5,
        force_match=True,
        scale_factors=box_coder.DEFAULT_SCALE_FACTORS,
    ):
        self.anchors = tf.constant(anchors, tf.float32)
        self.matched_threshold = matched_threshold
        self.unmatched_threshold = unmatched_threshold
        self.force_match = force_match
        self.scale_factors = tuple(scale_factors)

    @property
    def num_anchors(self):
        return int(self.anchors.shape[0])

    def __call__(self, boxes, classes):
        boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
        iou = bounding_boxes.compute_iou(boxes, self.anchors, bounding_box_format="yxyx")
        matches = matcher.argmax_match(
            iou, self.matched_threshold, self.unmatched_threshold, self.force_match
        )
        positive = matches >= 0
        safe = tf.maximum(matches, 0)
        # gather on an empty box list is invalid; pad one dummy box that is
        # never selected because every anchor is background then.
        padded_boxes = tf.concat([boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0)
        padded_classes = tf.concat([classes, tf.constant([0], tf.int32)], axis=0)
        codes = box_coder.encode(tf.gather(padded_boxes, safe), self.anchors, self.scale_factors)
        codes = tf.where(positive[:, None], codes, tf.zeros_like(codes))
        class_targets = tf.where(positive, tf.gather(padded_classes, safe), matches)
        return {"boxes": codes, "classes": class_targets}
