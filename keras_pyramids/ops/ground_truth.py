"""Ground truth padded to a fixed count per image, for detectors whose targets are built in the train step.

A two-stage detector's RoI targets depend on its own proposals, so they are
computed inside the train step (:mod:`keras_pyramids.ops.rpn_label_encoder`,
:mod:`keras_pyramids.ops.roi_sampler`), not in ``tf.data``. The step then needs
the ground truth with a static shape: :func:`pad_ground_truth` maps one
example's ``[M, 4]`` boxes and ``[M]`` classes to ``max_boxes`` slots and a
validity mask (the Model Garden's ``pad_to_fixed_size`` in its Mask R-CNN
parser, with the mask made explicit).

Images with more than ``max_boxes`` boxes keep the first ``max_boxes`` (in the
order the pipeline gives them) and the rest are dropped with a Python
:class:`GroundTruthTruncatedWarning`. The function runs as a ``tf.data`` map
(graph mode), where a Python ``warnings.warn`` at trace time cannot see the
box count; the warning is therefore raised from a ``tf.py_function`` that runs
only when boxes are dropped, with the same text every time, so Python's
default warning filter shows it once per ``max_boxes`` setting (``tf.print``
would print for every such image). The
``tf.py_function`` ties the pipeline to the Python process, as any ``tf.data``
pipeline of this package is.
"""

import warnings

import tensorflow as tf

PADDING_CLASS = -1


class GroundTruthTruncatedWarning(UserWarning):
    """An image had more ground-truth boxes than the padded count; the extra boxes were dropped."""


def _warn_truncated(max_boxes):
    # The same text for every image, so Python's "default" filter shows it once per max_boxes.
    warnings.warn(
        f"An image has more than max_boxes={max_boxes} ground-truth boxes; only the first {max_boxes} "
        "are used for training and the rest are dropped. Raise max_boxes to keep them all.",
        GroundTruthTruncatedWarning,
    )
    return True


def pad_ground_truth(boxes, classes, max_boxes):
    """Pads (or truncates) one image's ground truth to ``max_boxes`` slots.

    Args:
        boxes: ``[M, 4]`` normalised ``[ymin, xmin, ymax, xmax]``; ``M`` may be 0.
        classes: ``[M]`` 0-based class ids.
        max_boxes: slots per image (static, >= 1).

    Returns:
        dict with ``boxes [max_boxes, 4]`` float32 (padding rows zero),
        ``classes [max_boxes]`` int32 (padding :data:`PADDING_CLASS` = -1,
        never a real class) and ``valid [max_boxes]`` bool (True for the first
        ``min(M, max_boxes)`` slots).
    """
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
        raise ValueError(f"pad_ground_truth: max_boxes must be a positive int; got {max_boxes!r}.")
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
    count = tf.shape(boxes)[0]
    warned = tf.cond(
        count > max_boxes,
        lambda: tf.py_function(lambda: _warn_truncated(max_boxes), [], Tout=tf.bool),
        lambda: tf.constant(False),
    )
    with tf.control_dependencies([warned]):
        kept = tf.minimum(count, max_boxes)
    pad = max_boxes - kept
    boxes = tf.pad(boxes[:kept], [[0, pad], [0, 0]])
    classes = tf.pad(classes[:kept], [[0, pad]], constant_values=PADDING_CLASS)
    valid = tf.range(max_boxes) < kept
    boxes.set_shape([max_boxes, 4])
    classes.set_shape([max_boxes])
    return {"boxes": boxes, "classes": classes, "valid": valid}
