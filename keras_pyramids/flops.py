"""Counting the floating-point operations of a model's forward pass with TF's profiler."""

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from keras_pyramids.image_size import to_hw


def count_flops(model, image_size):
    """Floating-point operations of one forward pass at batch 1, by TF's profiler.

    The model's ``call`` (backbone, pyramid, head; no NMS) is traced as a
    concrete function and profiled with
    ``tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()``, which
    counts a multiply-add as 2 FLOPs (e.g. Conv2D: ``2 * k_h * k_w * c_in *
    c_out * h_out * w_out``) plus element-wise ops (bias, batch norm, ReLU6).

    Args:
        model: a Keras model taking float images ``[B, H, W, 3]``.
        image_size: int or ``(H, W)``.

    Returns:
        int, the FLOPs of one image.
    """
    height, width = to_hw(image_size)
    function = tf.function(lambda images: model(images, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32))
    # Constants instead of variable reads, so the profiler sees every weight shape.
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    # The v1 profiler logs a deprecation notice on every call; keep the report clean.
    verbosity = tf.compat.v1.logging.get_verbosity()
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    try:
        info = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                             cmd="op", options=options)
    finally:
        tf.compat.v1.logging.set_verbosity(verbosity)
    return int(info.total_float_ops)
