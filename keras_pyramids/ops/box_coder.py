"""Faster R-CNN box coder with scale factors (10, 10, 5, 5).

Ren et al., "Faster R-CNN", equation 2: ``t_y = (y - y_a) / h_a``,
``t_x = (x - x_a) / w_a``, ``t_h = log(h / h_a)``, ``t_w = log(w / w_a)``; the
SSD / PPN reference multiplies them by ``(10, 10, 5, 5)`` (SSD's "variances"
0.1, 0.1, 0.2, 0.2). Boxes and anchors are ``[ymin, xmin, ymax, xmax]``; codes
are ``[t_y, t_x, t_h, t_w]``. The arithmetic is Keras' own
``keras.utils.bounding_boxes`` delta coder, so it runs on any backend and in
``tf.data``.
"""

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
