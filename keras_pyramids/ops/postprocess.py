"""The last step of detection as a layer: per-class non-maximum suppression of decoded boxes.

A detector decodes its raw outputs with its own box coder (the one its label
encoder encodes targets with) and hands boxes and class scores to this layer.
It is the one place the model side uses TensorFlow ops directly
(``tf.image.combined_non_max_suppression``, :mod:`keras_pyramids.ops.soft_nms`),
so that a saved or exported model returns final detections.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_pyramids.ops.soft_nms import soft_nms

NMS_METHODS = ("hard", "soft_linear", "soft_gaussian")
# When the boxes are clipped to the image (see DetectionPostProcessor; tested in tests/test_postprocess.py).
CLIPPING = "after NMS; zero-area boxes dropped"


@keras.saving.register_keras_serializable(package="keras_pyramids")
class DetectionPostProcessor(keras.layers.Layer):
    """Keeps at most ``max_detections`` of a detector's decoded boxes per image.

    Per class, boxes scoring above ``score_threshold`` go
    through non-maximum suppression at ``iou_threshold``; the survivors are
    clipped to the image and those left with zero area are dropped, then the
    best ``max_detections`` over all classes are kept. This is the order of the
    TF Object Detection API's ``multiclass_non_max_suppression`` with a clip
    window (suppression on the unclipped boxes; ``clip_to_window`` with
    ``filter_nonoverlapping`` and zero-area boxes scored -1 before the
    ``max_total_size`` cut), which the PPN and SSD configs use.

    ``nms`` picks the suppression: ``"hard"`` (default; greedy NMS,
    ``tf.image.combined_non_max_suppression``), ``"soft_linear"`` or
    ``"soft_gaussian"`` (Bodla et al. 2017, :func:`keras_pyramids.ops.soft_nms.soft_nms`;
    the linear kernel decays scores of boxes with IoU >= ``iou_threshold`` by
    ``1 - IoU``, the Gaussian one every score by ``exp(-IoU^2 / soft_nms_sigma)``;
    boxes whose decayed score falls below ``score_threshold`` are dropped).
    Soft-NMS runs on the ``pre_nms_top_k`` best-scoring anchors of each class,
    so its cost is static: ``O(B C pre_nms_top_k^2)`` memory and
    ``max_detections_per_class`` loop steps.

    ``pre_nms_top_k_per_level`` (RetinaNet: 1000) first keeps, on each pyramid
    level, the anchors whose best class score is among the level's top k, as
    the RetinaNet paper's inference does (section 4: "we only decode box
    predictions from at most 1k top-scoring predictions per FPN level");
    Detectron ranks (anchor, class) pairs instead of anchors, which differs only
    when one anchor scores high for several classes.

    Call arguments:
        boxes: ``[B, N, 4]`` decoded boxes, normalised ``[ymin, xmin, ymax, xmax]``,
            or ``[B, N, C, 4]`` one box per class (a two-stage detector's
            class-specific regression; hard NMS only).
        scores: ``[B, N, C]`` class scores in ``[0, 1]``.
        level_sizes: anchors per pyramid level (python ints summing to ``N``);
            needed with ``pre_nms_top_k_per_level``.

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
        nms="hard",
        soft_nms_sigma=0.5,
        pre_nms_top_k=200,
        pre_nms_top_k_per_level=None,
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
        self.nms = nms
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.pre_nms_top_k = int(pre_nms_top_k)
        if pre_nms_top_k_per_level is not None and int(pre_nms_top_k_per_level) < 1:
            raise ValueError(f"pre_nms_top_k_per_level must be >= 1 or None; got {pre_nms_top_k_per_level}.")
        self.pre_nms_top_k_per_level = None if pre_nms_top_k_per_level is None else int(pre_nms_top_k_per_level)

    def call(self, boxes, scores, level_sizes=None):
        boxes = ops.cast(boxes, "float32")
        scores = ops.cast(scores, "float32")
        if self.pre_nms_top_k_per_level is not None:
            boxes, scores = self._top_k_per_level(boxes, scores, level_sizes)
        class_specific = len(boxes.shape) == 4
        if self.nms != "hard":
            if class_specific:
                raise ValueError(f"nms={self.nms!r} takes one box per candidate; class-specific boxes need 'hard'.")
            return self._soft_nms(boxes, scores)
        # Every class's survivors are kept until the clipping has dropped the
        # zero-area ones, so the cut to max_detections comes after it.
        survivors = min(scores.shape[2] * self.max_detections_per_class, scores.shape[1] * scores.shape[2])
        nmsed = tf.image.combined_non_max_suppression(
            boxes if class_specific else boxes[:, :, None, :],
            scores,
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=survivors,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        valid = tf.range(survivors)[None, :] < nmsed.valid_detections[:, None]
        return self._clip_and_keep_best(nmsed.nmsed_boxes, nmsed.nmsed_scores,
                                        ops.cast(nmsed.nmsed_classes, "int32"), valid)

    def _clip_and_keep_best(self, boxes, scores, classes, valid):
        """Clips candidates ``[B, M, ...]`` to ``[0, 1]``, drops zero-area ones, keeps the best ``max_detections``.

        Returns the detection dict, padded with zeros to ``max_detections``.
        """
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        valid = valid & (area > 0.0)
        # Invalid slots score -1 so they sort last; K may exceed the candidates.
        ranked = tf.where(valid, scores, -tf.ones_like(scores))
        k = min(self.max_detections, int(scores.shape[1]))
        best_scores, best = tf.math.top_k(ranked, k=k)
        valid = best_scores >= 0
        out_boxes = tf.where(valid[..., None], tf.gather(boxes, best, batch_dims=1), 0.0)
        out_classes = tf.where(valid, tf.gather(classes, best, batch_dims=1), 0)
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

    def _top_k_per_level(self, boxes, scores, level_sizes):
        """The ``pre_nms_top_k_per_level`` best anchors of each level (by best class score)."""
        if not level_sizes or sum(level_sizes) != scores.shape[1]:
            raise ValueError(
                f"pre_nms_top_k_per_level needs level_sizes summing to the {scores.shape[1]} anchors; "
                f"got {level_sizes}."
            )
        kept_boxes, kept_scores, start = [], [], 0
        for size in level_sizes:
            level_boxes, level_scores = boxes[:, start:start + size], scores[:, start:start + size]
            start += size
            if size <= self.pre_nms_top_k_per_level:
                kept_boxes.append(level_boxes)
                kept_scores.append(level_scores)
                continue
            _, best = tf.math.top_k(tf.reduce_max(level_scores, axis=-1), k=self.pre_nms_top_k_per_level)
            kept_boxes.append(tf.gather(level_boxes, best, batch_dims=1))
            kept_scores.append(tf.gather(level_scores, best, batch_dims=1))
        return tf.concat(kept_boxes, axis=1), tf.concat(kept_scores, axis=1)

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
        total = num_classes * per_class
        flat_classes = tf.zeros_like(tf.reshape(keep_index, [-1, total])) + tf.reshape(classes, [1, total])
        return self._clip_and_keep_best(tf.reshape(kept_boxes, [-1, total, 4]),
                                        tf.reshape(keep_scores, [-1, total]), flat_classes,
                                        tf.reshape(keep_index >= 0, [-1, total]))

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
            pre_nms_top_k_per_level=self.pre_nms_top_k_per_level,
        )
        return config
