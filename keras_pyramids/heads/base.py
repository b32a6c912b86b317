"""What every box predictor shares: the prior-probability bias and the output flattening."""

import math

import keras
from keras import ops


def prior_bias_initializer(prior_probability):
    """Class-logit bias so that every anchor starts at ``prior_probability``.

    Focal loss paper section 4.1 "Initialization": ``b = -log((1 - pi) / pi)``
    with ``pi = 0.01`` (``-4.6``), so the many background anchors do not swamp
    the first steps of training.
    """
    if not 0.0 < prior_probability < 1.0:
        raise ValueError(f"prior_probability must be in (0, 1); got {prior_probability}.")
    return keras.initializers.Constant(-math.log((1.0 - prior_probability) / prior_probability))


def flatten_level(x, code_size):
    """``[B, h, w, A * code_size]`` -> ``[B, h * w * A, code_size]`` (anchor order of :mod:`anchors`)."""
    h, w, depth = x.shape[1], x.shape[2], x.shape[3]
    # A static anchor count keeps the model's output shape (and XLA) static.
    count = h * w * depth // code_size if h is not None and w is not None else -1
    return ops.reshape(x, (ops.shape(x)[0], count, code_size))


def concat_levels(box_maps, class_maps, num_classes):
    """Flattens and concatenates per-level predictions into the head's output dict (float32)."""
    # float32 outputs whatever the compute dtype: under a mixed precision
    # policy (e.g. "mixed_bfloat16") the losses and the decode then run in
    # float32, as Keras' mixed precision guide advises for a model's outputs.
    return {
        "boxes": ops.cast(ops.concatenate([flatten_level(b, 4) for b in box_maps], axis=1), "float32"),
        "classes": ops.cast(
            ops.concatenate([flatten_level(c, num_classes) for c in class_maps], axis=1), "float32"),
    }
