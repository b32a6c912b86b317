"""Post-processing as a layer: decode box codes with the anchors, then per-class NMS.

This is the one place the model side uses TensorFlow ops directly
(``tf.image.combined_non_max_suppression``), so that a saved or exported model
returns final detections (DESIGN.md, "post-processing ... is a layer").
"""

import keras
import tensorflow as tf
from keras import ops

from keras_pyramids import box_coder


@keras.saving.register_keras_serializable(package="keras_pyramids")
class DetectionPostProcessor(keras.layers.Layer):
    """Decodes raw detector outputs into at most ``max_detections`` boxes per image.

    Scores are the sigmoid of the class logits (the models are trained with a
    sigmoid focal loss). Per class, boxes scoring above ``score_threshold`` go
    through non-maximum suppression at ``iou_threshold``; the best
    ``max_detections`` over all classes are kept.

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold}.")
        if max_detections < 1 or max_detections_per_class < 1:
            raise ValueError("max_detections and max_detections_per_class must be >= 1.")
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.max_detections_per_class = int(max_detections_per_class)
        self.scale_factors = tuple(float(s) for s in scale_factors)

    def decode(self, box_codes, anchors):
        """Box codes -> boxes ``[B, N, 4]`` clipped to ``[0, 1]``."""
        boxes = box_coder.decode(ops.cast(box_codes, "float32"), anchors, self.scale_factors)
        return ops.clip(boxes, 0.0, 1.0)

    def call(self, box_codes, class_logits, anchors):
        boxes = self.decode(box_codes, anchors)
        scores = ops.sigmoid(ops.cast(class_logits, "float32"))
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

    def get_config(self):
        config = super().get_config()
        config.update(
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            max_detections_per_class=self.max_detections_per_class,
            scale_factors=self.scale_factors,
        )
        return config
