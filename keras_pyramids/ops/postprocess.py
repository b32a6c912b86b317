"""Post-processing as a layer: decode box codes with the anchors, then per-class NMS.

This is the one place the model side uses TensorFlow ops directly
(``tf.image.combined_non_max_suppression``, :mod:`keras_pyramids.ops.soft_nms`),
so that a saved or exported model returns final detections (DESIGN.md,
"post-processing ... is a layer").
"""

import keras
import tensorflow as tf
from keras import ops

from keras_pyramids.ops import box_coder
from keras_pyramids.ops.soft_nms import soft_nms

NMS_METHODS = ("hard", "soft_linear", "soft_gaussian")


@keras.saving.register_keras_serializable(package="keras_pyramids")
class DetectionPostProcessor(keras.layers.Layer):
    """Decodes raw detector outputs into at most ``max_detections`` boxes per image.

    Scores are the sigmoid of the class logits (the models are trained with a
    sigmoid focal loss). Per class, boxes scoring above ``score_threshold`` go
    through non-maximum suppression at ``iou_threshold``; the best
    ``max_detections`` over all classes are kept.

    ``nms`` picks the suppression: ``"hard"`` (default; greedy NMS,
    ``tf.image.combined_non_max_suppression``), ``"soft_linear"`` or
    ``"soft_gaussian"`` (Bodla et al. 2017, :func:`keras_pyramids.ops.soft_nms.soft_nms`;
    the linear kernel decays scores of boxes with IoU >= ``iou_threshold`` by
    ``1 - IoU``, the Gaussian one every score by ``exp(-IoU^2 / soft_nms_sigma)``;
    boxes whose decayed score falls below ``score_threshold`` are dropped).
    Soft-NMS runs on the ``pre_nms_top_k`` best-scoring anchors of each class,
    so its cost is static: ``O(B C pre_nms_top_k^2)`` memory and
    ``max_detections_per_class`` loop steps.

    Call arguments:
        box_codes: ``[B, N, 4]`` box regressions.
        class_logits: ``[B, N, C]``.
        anchors: ``[N, 4]`` normalised ``[ymin, xmin, ymax, xmax]``.

    Returns:
        dict with ``boxes [B, K, 4]`` (normalised yxyx, clipped to the image),
        ``scores [B, K]``, ``classes [B, K]`` int32 and ``num_detections [B]``
        int32, ``K = max_detections``; entries past ``num_detections`` are zero.
    """

    def __init__(
        self,
        score_threshold=1e-8,
        iou_threshold=0.6,
        max_detections=100,
        max_detections_per_class=100,
        scale_factors=box_coder.DEFAULT_SCALE_FACTORS,
        nms="hard",
        soft_nms_sigma=0.5,
        pre_nms_top_k=200,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if nms not in NMS_METHODS:
            raise ValueError(f"nms must be one of {NMS_METHODS}; got {nms!r}.")
        if soft_nms_sigma <= 0:
            raise ValueError(f"soft_nms_sigma must be > 0; got {soft_nms_sigma}.")
        if pre_nms_top_k < 1:
            raise ValueError(f"pre_nms_top_k must be >= 1; got {pre_nms_top_k}.")
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold}.")
        if max_detections < 1 or max_detections_per_class < 1:
            raise ValueError("max_detections and max_detections_per_class must be >= 1.")
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.max_detections_per_class = int(max_detections_per_class)
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self.nms = nms
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.pre_nms_top_k = int(pre_nms_top_k)

    def decode(self, box_codes, anchors):
        """Box codes -> boxes ``[B, N, 4]`` clipped to ``[0, 1]``."""
        boxes = box_coder.decode(ops.cast(box_codes, "float32"), anchors, self.scale_factors)
        return ops.clip(boxes, 0.0, 1.0)

    def call(self, box_codes, class_logits, anchors):
        boxes = self.decode(box_codes, anchors)
        scores = ops.sigmoid(ops.cast(class_logits, "float32"))
        if self.nms != "hard":
            return self._soft_nms(boxes, scores)
        nmsed = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :],
            scores,
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        return {
            "boxes": nmsed.nmsed_boxes,
            "scores": nmsed.nmsed_scores,
            "classes": ops.cast(nmsed.nmsed_classes, "int32"),
            "num_detections": ops.cast(nmsed.valid_detections, "int32"),
        }

    def _soft_nms(self, boxes, scores):
        """Per-class soft-NMS on the top ``pre_nms_top_k`` anchors, then the best ``max_detections``."""
        num_anchors, num_classes = scores.shape[1], scores.shape[2]
        top_k = min(self.pre_nms_top_k, num_anchors)
        per_class_scores = tf.transpose(scores, [0, 2, 1])  # [B, C, N]
        top_scores, top_index = tf.math.top_k(per_class_scores, k=top_k)  # [B, C, k]
        top_boxes = tf.gather(boxes, top_index, batch_dims=1)  # [B, C, k, 4]
        keep_index, keep_scores, _ = soft_nms(
            top_boxes,
            top_scores,
            max_output_size=self.max_detections_per_class,
            method="linear" if self.nms == "soft_linear" else "gaussian",
            iou_threshold=self.iou_threshold,
            sigma=self.soft_nms_sigma,
            score_threshold=self.score_threshold,
        )  # [B, C, M]
        per_class = keep_index.shape[-1]
        kept_boxes = tf.gather(top_boxes, tf.maximum(keep_index, 0), batch_dims=2)  # [B, C, M, 4]
        classes = tf.broadcast_to(tf.range(num_classes, dtype=tf.int32)[:, None], [num_classes, per_class])
        flat_scores = tf.reshape(keep_scores, [-1, num_classes * per_class])
        flat_boxes = tf.reshape(kept_boxes, [-1, num_classes * per_class, 4])
        flat_valid = tf.reshape(keep_index >= 0, [-1, num_classes * per_class])
        # Invalid slots score -1 so they sort last; K may exceed the candidates.
        ranked = tf.where(flat_valid, flat_scores, -tf.ones_like(flat_scores))
        total = num_classes * per_class
        k = min(self.max_detections, total)
        best_scores, best = tf.math.top_k(ranked, k=k)
        valid = best_scores >= 0
        out_boxes = tf.where(valid[..., None], tf.gather(flat_boxes, best, batch_dims=1), 0.0)
        out_classes = tf.where(valid, tf.gather(tf.reshape(classes, [-1]), best), 0)
        out_scores = tf.where(valid, best_scores, 0.0)
        if k < self.max_detections:  # keep the [B, max_detections] output contract
            pad = [[0, 0], [0, self.max_detections - k]]
            out_boxes = tf.pad(out_boxes, pad + [[0, 0]])
            out_scores = tf.pad(out_scores, pad)
            out_classes = tf.pad(out_classes, pad)
            valid = tf.pad(valid, pad)
        return {
            "boxes": out_boxes,
            "scores": out_scores,
            "classes": ops.cast(out_classes, "int32"),
            "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            nms=self.nms,
            soft_nms_sigma=self.soft_nms_sigma,
            pre_nms_top_k=self.pre_nms_top_k,
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            max_detections_per_class=self.max_detections_per_class,
            scale_factors=self.scale_factors,
        )
        return config
