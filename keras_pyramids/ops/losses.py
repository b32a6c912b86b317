"""Detection losses, and the class-score layout they imply.

Two classification losses, chosen by :attr:`LossConfig.classification_loss`:

- ``"sigmoid_focal"``: sigmoid focal loss over the ``C`` foreground classes
  (focal loss paper, Lin et al., equation 5), summed over anchors and classes.
  PPN paper section 3: "the smooth l1 loss for box regression, and the focal
  loss with alpha = 0.25 and gamma = 2"; the TF Object Detection API configs
  that produced the PPN and SSD MobileNet v1 numbers
  (``ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync.config``,
  ``ssd_mobilenet_v1_300x300_coco14_sync.config``) use
  ``weighted_sigmoid_focal { alpha: 0.75 gamma: 2.0 }``; alpha weights the
  positive term in both (OD API ``SigmoidFocalClassificationLoss``: ``target *
  alpha + (1 - target) * (1 - alpha)``), as in Keras'
  ``binary_focal_crossentropy(apply_class_balancing=True)`` used here.
- ``"softmax_hard_negative"``: SSD's MultiBox confidence loss (Liu et al.,
  "SSD", section 2.2, "Training objective" and "Hard negative mining"): softmax
  cross-entropy over ``C + 1`` logits (background at index 0) on the positive
  anchors and on the highest-loss negatives of each image, at most
  ``negative_positive_ratio`` (3) per positive. M2Det trains with it ("similar
  to SSD"; its reference code's ``MultiBoxLoss``, ``neg_pos = 3``).

The localisation loss is smooth L1 with transition ``smooth_l1_beta`` (1 in
the SSD / PPN reference; Keras' ``huber`` with ``delta = beta``, divided by
``beta``) summed over the 4 box codes of the positive anchors. Both terms are divided by
the number of positive anchors in the batch (at least 1: the OD API's
``normalize_loss_by_num_matches``, SSD's ``N``); with
``normalize_box_loss_by_code_size`` the box term is further divided by the code
size 4 (the OD API's ``normalize_loc_loss_by_codesize: true``, which both
configs set; SSD and M2Det do not).

``l2_regularization`` adds ``l2 / 2 * sum(w ** 2)`` over the convolution and
dense kernels (not biases, not batch-norm parameters) to the loss, as the OD
API's ``l2_regularizer { weight: 4e-5 }`` on every conv (slim's
``l2_regularizer(scale)`` is ``scale * tf.nn.l2_loss(w)``, ``l2_loss = sum(w **
2) / 2``). Being part of the loss, its gradient goes through the optimizer
(momentum included), unlike Keras' decoupled ``weight_decay``.

One owner for the class-score layout: the loss decides how many class logits a
head predicts per anchor (:meth:`LossConfig.num_class_logits`) and how the
detector turns them into the ``C`` per-class scores it suppresses and exports
(:func:`class_scores`), so training and inference cannot disagree.
"""

import dataclasses

import keras
from keras import ops

CLASSIFICATION_LOSSES = ("sigmoid_focal", "softmax_hard_negative")
BOX_CODE_SIZE = 4


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The training loss of a single-shot detector (see the module docstring).

    Attributes:
        classification_loss: ``"sigmoid_focal"`` (``C`` sigmoid logits per
            anchor) or ``"softmax_hard_negative"`` (``C + 1`` softmax logits,
            background first, with hard negative mining).
        focal_alpha, focal_gamma: focal loss weight of the positive term and
            exponent (sigmoid focal only).
        negative_positive_ratio: mined negatives per positive anchor, per
            image (softmax only; SSD: 3).
        classification_weight, localization_weight: weights of the two terms.
        smooth_l1_beta: where smooth L1 turns from quadratic to linear: 1 in
            the SSD / PPN reference (Huber, delta 1); detectron2's RetinaNet
            uses 0.1 (``SMOOTH_L1_LOSS_BETA``, with box codes unscaled),
            Detectron's 0.11.
        normalize_box_loss_by_code_size: divide the box term by 4 as well.
        l2_regularization: weight of the L2 loss on kernels (0: none).
    """

    classification_loss: str = "sigmoid_focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    negative_positive_ratio: float = 3.0
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    smooth_l1_beta: float = 1.0
    normalize_box_loss_by_code_size: bool = True
    l2_regularization: float = 0.0

    def __post_init__(self):
        if self.classification_loss not in CLASSIFICATION_LOSSES:
            raise ValueError(f"classification_loss must be one of {CLASSIFICATION_LOSSES}; "
                             f"got {self.classification_loss!r}.")
        if not 0.0 <= self.focal_alpha <= 1.0:
            raise ValueError(f"focal_alpha must be in [0, 1]; got {self.focal_alpha}.")
        if self.focal_gamma < 0 or self.negative_positive_ratio <= 0:
            raise ValueError("focal_gamma must be >= 0 and negative_positive_ratio > 0; "
                             f"got {self.focal_gamma}, {self.negative_positive_ratio}.")
        if not self.smooth_l1_beta > 0:
            raise ValueError(f"smooth_l1_beta must be > 0; got {self.smooth_l1_beta}.")
        if self.l2_regularization < 0:
            raise ValueError(f"l2_regularization must be >= 0; got {self.l2_regularization}.")

    @property
    def score_activation(self):
        """``"sigmoid"`` (independent per-class scores) or ``"softmax"`` (background logit first)."""
        return "softmax" if self.classification_loss == "softmax_hard_negative" else "sigmoid"

    def num_class_logits(self, num_classes):
        """Class logits a head predicts per anchor: ``C``, or ``C + 1`` with a background logit."""
        return int(num_classes) + (1 if self.score_activation == "softmax" else 0)

    def to_dict(self):
        return dataclasses.asdict(self)


def preset_loss(loss_config, preset):
    """The loss of a model whose default is ``preset``: ``None`` gives the preset, a dict
    replaces only the settings it names (an unknown name is refused by the composer), a
    :class:`LossConfig` is used as it is."""
    if isinstance(loss_config, dict):
        return {**preset.to_dict(), **loss_config}
    return preset if loss_config is None else loss_config


def class_scores(class_logits, loss_config):
    """Class logits ``[B, N, num_class_logits]`` -> per-class scores ``[B, N, C]`` in [0, 1].

    Sigmoid per class, or softmax over ``C + 1`` with the background column
    dropped (SSD's and M2Det's inference), as ``loss_config`` trained them.
    """
    logits = ops.cast(class_logits, "float32")
    if loss_config.score_activation == "softmax":
        return ops.softmax(logits, axis=-1)[..., 1:]
    return ops.sigmoid(logits)


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


def hard_negative_softmax_loss(class_targets, class_logits, negative_positive_ratio=3.0):
    """Per-anchor softmax cross-entropy on positives and mined hard negatives (SSD's MultiBox loss).

    Every positive anchor counts; of the background anchors (target ``-1``) of
    each image, the ``min(floor(ratio * positives), N - 1)`` with the highest
    background cross-entropy count (the reference's ``idx_rank < num_neg``,
    ``num_neg = clamp(neg_pos * num_pos, max=N - 1)``); ignored anchors
    (``-2``) never count. An image without positives has no negatives either.

    Args:
        class_targets: int ``[B, N]``.
        class_logits: ``[B, N, C + 1]``, background logit first.

    Returns:
        ``[B, N]`` loss, 0 for anchors that do not count.
    """
    class_targets = ops.cast(class_targets, "int32")
    logits = ops.cast(class_logits, "float32")
    labels = ops.where(class_targets >= 0, class_targets + 1, 0)
    cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    positive = class_targets >= 0
    negative = class_targets == -1
    num_anchors = int(logits.shape[1]) if logits.shape[1] is not None else ops.shape(logits)[1]
    num_positive = ops.sum(ops.cast(positive, "float32"), axis=1, keepdims=True)
    num_negative = ops.minimum(ops.floor(negative_positive_ratio * num_positive),
                               ops.cast(num_anchors - 1, "float32"))
    # Rank of each negative by its loss, 0 = hardest (argsort of an argsort).
    mining = ops.where(negative, cross_entropy, -1.0)
    order = ops.argsort(-mining, axis=1)
    rank = ops.argsort(order, axis=1)
    hard = negative & (ops.cast(rank, "float32") < num_negative)
    return cross_entropy * ops.cast(positive | hard, cross_entropy.dtype)


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


def regularized_kernels(variables):
    """The variables the L2 loss covers: conv / depthwise / dense kernels (names ending in ``kernel``)."""
    return [v for v in variables if v.name.endswith("kernel")]


def l2_kernel_loss(kernels, weight):
    """``weight / 2 * sum(w ** 2)`` over ``kernels`` (slim's ``l2_regularizer``), float32 scalar."""
    total = ops.convert_to_tensor(0.0, "float32")
    for kernel in kernels:
        total = total + ops.sum(ops.square(ops.cast(kernel, "float32")))
    return 0.5 * weight * total


def detection_loss(targets, outputs, num_classes, config=LossConfig()):
    """Classification and box loss of a batch, normalised by the number of positive anchors.

    Args:
        targets: ``{"boxes": [B, N, 4], "classes": [B, N]}`` from
            :class:`keras_pyramids.ops.label_encoder.AnchorLabelEncoder`.
        outputs: the detector's raw outputs ``{"boxes": [B, N, 4],
            "classes": [B, N, config.num_class_logits(num_classes)]}``.

    Returns:
        ``(total, box_loss, class_loss)`` scalars; the two parts are already
        normalised and weighted, ``total`` is their sum (the L2 term, which
        needs the model's weights, is added by the model).
    """
    class_targets = targets["classes"]
    num_matches = ops.maximum(ops.sum(ops.cast(class_targets >= 0, "float32")), 1.0)
    if config.classification_loss == "softmax_hard_negative":
        per_anchor = hard_negative_softmax_loss(class_targets, outputs["classes"], config.negative_positive_ratio)
    else:
        per_anchor = focal_loss(class_targets, outputs["classes"], num_classes, config.focal_alpha,
                                config.focal_gamma)
    class_loss = ops.sum(per_anchor)
    box_loss = ops.sum(smooth_l1_loss(targets["boxes"], outputs["boxes"], class_targets, config.smooth_l1_beta))
    box_normalizer = num_matches * (BOX_CODE_SIZE if config.normalize_box_loss_by_code_size else 1.0)
    class_loss = config.classification_weight * class_loss / num_matches
    box_loss = config.localization_weight * box_loss / box_normalizer
    return class_loss + box_loss, box_loss, class_loss
