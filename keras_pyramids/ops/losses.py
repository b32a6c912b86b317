"""Detection loss: sigmoid focal loss for classes, smooth L1 for boxes.

PPN paper section 3: "the smooth l1 loss for box regression, and the focal loss
with alpha = 0.25 and gamma = 2 for box classification" (focal loss: Lin et al.,
"Focal Loss for Dense Object Detection", equation 5). Both terms are summed over
anchors and divided by the number of matched anchors, as the reference's
``normalize_loss_by_num_matches`` does. The element-wise losses are Keras' own
(``binary_focal_crossentropy``; ``huber`` with ``delta = beta``, divided by ``beta``, is smooth L1).
"""

import dataclasses

import keras
from keras import ops


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights, focal parameters and smooth-L1 transition of :func:`detection_loss`.

    ``smooth_l1_beta`` is where smooth L1 turns from quadratic to linear: 1 in
    the SSD / PPN reference (Huber, delta 1); detectron2's RetinaNet uses 0.1
    (``SMOOTH_L1_LOSS_BETA``, with box codes unscaled), Detectron's 0.11.
    """

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    smooth_l1_beta: float = 1.0

    def __post_init__(self):
        if not self.smooth_l1_beta > 0:
            raise ValueError(f"smooth_l1_beta must be > 0; got {self.smooth_l1_beta}.")

    def to_dict(self):
        return dataclasses.asdict(self)


def focal_loss(class_targets, class_logits, num_classes, alpha=0.25, gamma=2.0):
    """Per-anchor sigmoid focal loss summed over classes.

    Args:
        class_targets: int ``[B, N]``: class id, ``-1`` background, ``-2`` ignore.
        class_logits: ``[B, N, num_classes]``.

    Returns:
        ``[B, N]`` loss; ignored anchors get 0.
    """
    class_targets = ops.cast(class_targets, "int32")
    one_hot = ops.one_hot(ops.maximum(class_targets, 0), num_classes)
    one_hot = one_hot * ops.cast(class_targets >= 0, one_hot.dtype)[..., None]
    logits = ops.cast(class_logits, "float32")
    # Keras averages over the last axis; the paper's loss sums over classes.
    per_anchor = num_classes * keras.losses.binary_focal_crossentropy(
        one_hot,
        logits,
        apply_class_balancing=True,
        alpha=alpha,
        gamma=gamma,
        from_logits=True,
    )
    return per_anchor * ops.cast(class_targets >= -1, per_anchor.dtype)


def smooth_l1(box_targets, box_codes, beta=1.0):
    """Smooth L1 summed over the last axis (the 4 box codes): ``[..., 4] -> [...]``.

    Smooth L1 with transition ``beta`` (Fast R-CNN eq. 3 for ``beta = 1``):
    ``0.5 x^2 / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta``, which is
    Keras' Huber loss with ``delta = beta`` divided by ``beta``.
    """
    codes = ops.cast(box_targets, "float32")
    return codes.shape[-1] / beta * keras.losses.huber(codes, ops.cast(box_codes, "float32"), delta=beta)


def smooth_l1_loss(box_targets, box_codes, class_targets, beta=1.0):
    """Per-anchor :func:`smooth_l1` over the 4 box codes; 0 for unmatched anchors."""
    per_anchor = smooth_l1(box_targets, box_codes, beta)
    return per_anchor * ops.cast(class_targets >= 0, per_anchor.dtype)


def detection_loss(targets, outputs, num_classes, config=LossConfig()):
    """Total loss of a batch, normalised by the number of matched anchors.

    Args:
        targets: ``{"boxes": [B, N, 4], "classes": [B, N]}`` from
            :class:`keras_pyramids.ops.label_encoder.AnchorLabelEncoder`.
        outputs: the detector's raw outputs ``{"boxes": [B, N, 4],
            "classes": [B, N, num_classes]}``.

    Returns:
        ``(total, box_loss, class_loss)`` scalars; the two parts are already
        normalised and weighted, ``total`` is their sum.
    """
    class_targets = targets["classes"]
    num_matches = ops.maximum(ops.sum(ops.cast(class_targets >= 0, "float32")), 1.0)
    class_loss = ops.sum(
        focal_loss(class_targets, outputs["classes"], num_classes, config.focal_alpha, config.focal_gamma)
    )
    box_loss = ops.sum(smooth_l1_loss(targets["boxes"], outputs["boxes"], class_targets, config.smooth_l1_beta))
    class_loss = config.classification_weight * class_loss / num_matches
    box_loss = config.localization_weight * box_loss / num_matches
    return class_loss + box_loss, box_loss, class_loss
