"""Region proposal network training targets, computed batched inside the train step.

Ren et al. 2015, Faster R-CNN, section 3.1.2 "Loss Function": an anchor is
positive if its IoU with a ground-truth box is >= 0.7, or if it has the highest
IoU with some box (so every box gets an anchor); negative if its IoU is < 0.3
with every box; anything else does not contribute. Section 3.1.3: each image
contributes 256 randomly sampled anchors with a positive : negative ratio of
up to 1 : 1, padded with negatives. Box targets are the anchor-relative codes
of equation 2, unscaled (``BoxCoder`` scale factors ``(1, 1, 1, 1)``, as
detectron2's ``RPN.BBOX_REG_WEIGHTS`` and torchvision's RPN).

Anchors that cross the image border: the paper ignores them during training
(section 3.3, "Implementation Details"), but detectron2
(``RPN.BOUNDARY_THRESH = -1``) and torchvision keep them, and so does this
encoder: they are labelled like every other anchor.

Unlike :class:`keras_pyramids.ops.label_encoder.AnchorLabelEncoder` (one image
in ``tf.data``), this runs on the whole batch with padded ground truth
(:func:`keras_pyramids.ops.ground_truth.pad_ground_truth`): the two-stage train
step computes RPN and RoI targets together, and every shape is static so it
compiles with XLA.
"""

import keras
import tensorflow as tf
from keras.utils import bounding_boxes

from keras_pyramids.ops import matcher
from keras_pyramids.ops.box_coder import BoxCoder
from keras_pyramids.ops.sampling import check_fraction_settings, sample_balanced, scatter_labels

RPN_SCALE_FACTORS = (1.0, 1.0, 1.0, 1.0)


def check_threshold(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}.")
    return float(value)


def gather_ground_truth(gt_boxes, matches):
    """Boxes ``[B, M, 4]`` picked by ``matches [B, N]`` (negative entries pick box 0; zeros if ``M = 0``)."""
    if gt_boxes.shape[1] == 0:
        return tf.zeros(tf.concat([tf.shape(matches), [4]], 0), gt_boxes.dtype)
    return tf.gather(gt_boxes, tf.maximum(matches, 0), batch_dims=1)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class RPNLabelEncoder:
    """Labels and samples a batch's anchors for the RPN loss (module docstring).

    Args:
        positive_threshold, negative_threshold: IoU >= 0.7 positive, < 0.3
            negative.
        allow_low_quality_matches: each box's best anchor(s) are positive too
            (:func:`keras_pyramids.ops.matcher.batched_argmax_match`).
        num_samples, positive_fraction: 256 anchors per image, at most half
            positive (:func:`keras_pyramids.ops.sampling.sample_balanced`).
        box_coder: the RPN's :class:`BoxCoder` (or its config); the proposal
            generator decodes the RPN's deltas with this same object.

    ``encoder.encode(anchors, gt_boxes, gt_valid, seed)``:

    - ``anchors``: ``[N, 4]`` normalised yxyx, all levels concatenated (static).
    - ``gt_boxes``: ``[B, M, 4]`` normalised yxyx, padded; ``gt_valid``: bool
      ``[B, M]``.
    - ``seed``: shape ``[2]`` int tensor for the stateless sampling.

    returns ``{"objectness": int32 [B, N], "box_targets": float32 [B, N, 4]}``:
    objectness 1 for sampled positives, 0 for sampled negatives, -1 for anchors
    outside the sample (no loss); box targets are the codes of the matched box
    for sampled positives and 0 elsewhere. The references normalise both RPN
    losses by the number of sampled anchors (``num_samples * B``).
    """

    def __init__(self, positive_threshold=0.7, negative_threshold=0.3, allow_low_quality_matches=True,
                 num_samples=256, positive_fraction=0.5, box_coder=None):
        positive_threshold = check_threshold("positive_threshold", positive_threshold)
        negative_threshold = check_threshold("negative_threshold", negative_threshold)
        if negative_threshold > positive_threshold:
            raise ValueError(
                f"negative_threshold ({negative_threshold}) must not exceed positive_threshold ({positive_threshold})."
            )
        check_fraction_settings(num_samples, positive_fraction, "RPNLabelEncoder")
        if isinstance(box_coder, dict):
            box_coder = BoxCoder.from_config(box_coder)
        self.positive_threshold = positive_threshold
        self.negative_threshold = negative_threshold
        self.allow_low_quality_matches = bool(allow_low_quality_matches)
        self.num_samples = num_samples
        self.positive_fraction = float(positive_fraction)
        self.box_coder = box_coder or BoxCoder(RPN_SCALE_FACTORS)

    def encode(self, anchors, gt_boxes, gt_valid, seed):
        anchors = tf.convert_to_tensor(anchors, tf.float32)
        gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
        gt_valid = tf.convert_to_tensor(gt_valid, tf.bool)
        num_anchors = anchors.shape[0]
        if num_anchors is None or len(gt_boxes.shape) != 3:
            raise ValueError(
                f"RPNLabelEncoder.encode needs static anchors [N, 4] and padded boxes [B, M, 4]; "
                f"got {anchors.shape} and {gt_boxes.shape}."
            )
        iou = bounding_boxes.compute_iou(gt_boxes, anchors, bounding_box_format="yxyx")  # [B, M, N]
        matches = matcher.batched_argmax_match(
            iou, gt_valid, self.positive_threshold, self.negative_threshold, self.allow_low_quality_matches
        )
        indices, is_positive, valid = sample_balanced(
            matches >= 0, matches == matcher.BACKGROUND, self.num_samples, self.positive_fraction, seed
        )
        objectness = scatter_labels(indices, is_positive, valid, num_anchors)
        codes = self.box_coder.encode(gather_ground_truth(gt_boxes, matches), anchors)
        box_targets = tf.where((objectness == 1)[..., None], codes, 0.0)
        return {"objectness": objectness, "box_targets": tf.stop_gradient(box_targets)}

    def get_config(self):
        return {
            "positive_threshold": self.positive_threshold,
            "negative_threshold": self.negative_threshold,
            "allow_low_quality_matches": self.allow_low_quality_matches,
            "num_samples": self.num_samples,
            "positive_fraction": self.positive_fraction,
            "box_coder": self.box_coder.get_config(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
