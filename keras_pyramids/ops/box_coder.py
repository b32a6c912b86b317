"""Faster R-CNN box coder with scale factors (10, 10, 5, 5).

Ren et al., "Faster R-CNN", equation 2: ``t_y = (y - y_a) / h_a``,
``t_x = (x - x_a) / w_a``, ``t_h = log(h / h_a)``, ``t_w = log(w / w_a)``; the
SSD / PPN reference multiplies them by ``(10, 10, 5, 5)`` (SSD's "variances"
0.1, 0.1, 0.2, 0.2). Boxes and anchors are ``[ymin, xmin, ymax, xmax]``; codes
are ``[t_y, t_x, t_h, t_w]``. The arithmetic is Keras' own
``keras.utils.bounding_boxes`` delta coder, so it runs on any backend and in
``tf.data``.
"""

import math

import keras
from keras.utils import bounding_boxes

DEFAULT_SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)


def _variance(scale_factors):
    return [1.0 / s for s in scale_factors]


def encode(boxes, anchors, scale_factors=DEFAULT_SCALE_FACTORS):
    """Encodes ``boxes`` ``[..., N, 4]`` against ``anchors`` ``[N, 4]`` -> codes ``[..., N, 4]``."""
    return bounding_boxes.encode_box_to_deltas(
        anchors,
        boxes,
        anchor_format="yxyx",
        box_format="yxyx",
        encoding_format="center_yxhw",
        variance=_variance(scale_factors),
    )


def decode(codes, anchors, scale_factors=DEFAULT_SCALE_FACTORS):
    """Inverse of :func:`encode`: codes ``[..., N, 4]`` -> boxes ``[..., N, 4]``."""
    return bounding_boxes.decode_deltas_to_boxes(
        anchors,
        codes,
        anchor_format="yxyx",
        box_format="yxyx",
        encoded_format="center_yxhw",
        variance=_variance(scale_factors),
    )


@keras.saving.register_keras_serializable(package="keras_pyramids")
class BoxCoder:
    """The one owner of a detector's box-code scale factors.

    A detector's label encoder encodes training targets with it and the
    detector decodes its predictions with the very same object, so encoding and
    decoding cannot disagree (a model stores it once, in its label encoder's
    config).

    Args:
        scale_factors: ``(s_y, s_x, s_h, s_w)`` multiplying ``(t_y, t_x, t_h,
            t_w)``; ``(10, 10, 5, 5)`` for SSD / PPN / Faster R-CNN,
            ``(1, 1, 1, 1)`` for RetinaNet.
    """

    def __init__(self, scale_factors=DEFAULT_SCALE_FACTORS):
        scale_factors = tuple(float(s) for s in scale_factors)
        if len(scale_factors) != 4 or not all(math.isfinite(s) and s > 0 for s in scale_factors):
            raise ValueError(f"scale_factors must be 4 positive numbers; got {scale_factors}.")
        self.scale_factors = scale_factors

    def encode(self, boxes, anchors):
        """Boxes ``[..., N, 4]`` (yxyx) against anchors ``[N, 4]`` -> codes ``[..., N, 4]``."""
        return encode(boxes, anchors, self.scale_factors)

    def decode(self, codes, anchors):
        """Codes ``[..., N, 4]`` -> boxes ``[..., N, 4]`` (yxyx, not clipped)."""
        return decode(codes, anchors, self.scale_factors)

    def get_config(self):
        return {"scale_factors": list(self.scale_factors)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, BoxCoder) and other.scale_factors == self.scale_factors

    def __repr__(self):
        return f"BoxCoder(scale_factors={self.scale_factors})"
