"""Per-anchor training targets (label encoding), computed in the ``tf.data`` pipeline.

Encoding targets per example before batching keeps the train step free of
data-dependent shapes: it sees ``[B, N, 4]`` box codes and ``[B, N]`` class ids,
which is what XLA and TPUs need. KerasHub calls this object a label encoder
(``RetinaNetLabelEncoder``), the Model Garden an anchor labeler.
"""

import keras
import tensorflow as tf
from keras.utils import bounding_boxes

from keras_pyramids.ops import matcher
from keras_pyramids.ops.box_coder import BoxCoder


@keras.saving.register_keras_serializable(package="keras_pyramids")
class AnchorLabelEncoder:
    """Matches one image's ground truth to anchors and encodes the targets.

    Args:
        matched_threshold, unmatched_threshold, force_match: see
            :func:`keras_pyramids.ops.matcher.argmax_match` (SSD / PPN: 0.5, 0.5,
            forced; RetinaNet: 0.5, 0.4).
        box_coder: the :class:`~keras_pyramids.ops.box_coder.BoxCoder` (or its
            config dict). The detector decodes its predictions with this same
            object: it is the only owner of the scale factors.

    ``encoder.encode(anchors, boxes, classes)`` with ``anchors [N, 4]``,
    ``boxes [M, 4]`` (normalised yxyx) and ``classes [M]`` (int,
    ``0 .. num_classes - 1``) returns ``{"boxes": [N, 4] float32 codes,
    "classes": [N] int32}`` where ``classes`` is the class of the matched box,
    ``-1`` for background and ``-2`` for ignored anchors. Box codes of unmatched
    anchors are zeros (they get no box loss).
    """

    def __init__(self, matched_threshold=0.5, unmatched_threshold=0.5, force_match=True, box_coder=None):
        if isinstance(box_coder, dict):
            box_coder = BoxCoder.from_config(box_coder)
        for name, value in (("matched_threshold", matched_threshold), ("unmatched_threshold", unmatched_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}.")
        if unmatched_threshold > matched_threshold:
            raise ValueError(
                f"unmatched_threshold ({unmatched_threshold}) must not exceed matched_threshold ({matched_threshold})."
            )
        self.matched_threshold = float(matched_threshold)
        self.unmatched_threshold = float(unmatched_threshold)
        self.force_match = bool(force_match)
        self.box_coder = box_coder or BoxCoder()

    def encode(self, anchors, boxes, classes):
        anchors = tf.convert_to_tensor(anchors, tf.float32)
        boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
        iou = bounding_boxes.compute_iou(boxes, anchors, bounding_box_format="yxyx")
        matches = matcher.argmax_match(iou, self.matched_threshold, self.unmatched_threshold, self.force_match)
        positive = matches >= 0
        safe = tf.maximum(matches, 0)
        # gather on an empty box list is invalid; pad one dummy box that is
        # never selected because every anchor is background then.
        padded_boxes = tf.concat([boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0)
        padded_classes = tf.concat([classes, tf.constant([0], tf.int32)], axis=0)
        codes = self.box_coder.encode(tf.gather(padded_boxes, safe), anchors)
        codes = tf.where(positive[:, None], codes, tf.zeros_like(codes))
        class_targets = tf.where(positive, tf.gather(padded_classes, safe), matches)
        # The matcher's tf.cond (no-box branch) hides the anchor count from
        # shape inference; restore it so batches are fully static.
        class_targets.set_shape(anchors.shape[:1])
        return {"boxes": codes, "classes": class_targets}

    def bind(self, anchors):
        """A callable ``(boxes, classes) -> targets`` for one model's anchors (the ``tf.data`` map)."""
        return TargetAssigner(self, anchors)

    def get_config(self):
        return {
            "matched_threshold": self.matched_threshold,
            "unmatched_threshold": self.unmatched_threshold,
            "force_match": self.force_match,
            "box_coder": self.box_coder.get_config(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class TargetAssigner:
    """An :class:`AnchorLabelEncoder` bound to one model's anchors: ``(boxes, classes) -> targets``."""

    def __init__(self, encoder, anchors):
        self.encoder = encoder
        self.anchors = tf.constant(anchors, tf.float32)

    @property
    def num_anchors(self):
        return int(self.anchors.shape[0])

    def __call__(self, boxes, classes):
        return self.encoder.encode(self.anchors, boxes, classes)
