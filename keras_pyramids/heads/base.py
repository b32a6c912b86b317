"""What every box predictor shares: the output convs, the prior-probability bias, the output flattening."""

import copy
import math

import keras
from keras import layers, ops


# The SSD / PPN reference's box-predictor convs (OD API configs: conv_hyperparams
# ``random_normal_initializer { stddev: 0.01 mean: 0.0 }``; also RetinaNet's
# section 4.1). Keras' default (Glorot uniform) has a std of about 0.04 for a
# 1x1 512 -> 546 conv.
PREDICTOR_INITIALIZER = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.01}}


def initializer_config(identifier):
    """A serialisable form (name or config dict) of a Keras initializer identifier or instance."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        return identifier
    initializer = keras.initializers.get(copy.deepcopy(identifier))
    config = keras.initializers.serialize(initializer)
    return {"class_name": config["class_name"], "config": config["config"]}


def new_initializer(identifier):
    """A *new* initializer object for ``identifier`` (name, config dict or instance).

    An unseeded Keras initializer object gives the same values on every call,
    so each conv gets its own object.
    """
    if callable(identifier) and not isinstance(identifier, keras.initializers.Initializer):
        return identifier()  # a factory of initializers
    return keras.initializers.get(copy.deepcopy(initializer_config(identifier)))


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


def predictor_convs(
    num_anchors,
    num_classes,
    kernel_size,
    class_prior_probability,
    kernel_initializer=None,
    suffix="",
):
    """The two output convs of a box predictor: ``A * 4`` box codes and ``A * C`` class logits.

    Channel ``a * k + i`` of a ``k``-channel output is code ``i`` of anchor
    ``a`` at that location (what :func:`flatten_level` assumes). The class conv
    starts at ``class_prior_probability`` (:func:`prior_bias_initializer`).

    Args:
        kernel_initializer: a Keras initializer (name, config dict or
            object; each conv gets a new object, see :func:`new_initializer`),
            a callable returning a new initializer for each conv, or ``None``
            for Keras' default.
        suffix: appended to the layer names ``box_encodings`` and
            ``class_predictions``.
    """
    def kernel():
        return new_initializer(kernel_initializer) if kernel_initializer is not None else "glorot_uniform"

    box_conv = layers.Conv2D(
        num_anchors * 4, kernel_size, padding="same", kernel_initializer=kernel(),
        name=f"box_encodings{suffix}",
    )
    class_conv = layers.Conv2D(
        num_anchors * num_classes,
        kernel_size,
        padding="same",
        kernel_initializer=kernel(),
        bias_initializer=prior_bias_initializer(class_prior_probability),
        name=f"class_predictions{suffix}",
    )
    return box_conv, class_conv


class LevelSharedPredictor(keras.layers.Layer):
    """Base of the box predictors whose weights serve every pyramid level (PPN, RetinaNet).

    Holds the settings they share (``num_classes``, ``num_anchors`` per
    location, tower ``depth``, ``class_prior_probability``). Subclasses
    implement ``predict_level(x, level, training)`` -> ``(box map
    [B, h, w, A * 4], class map [B, h, w, A * C])``; this class checks that all
    levels have one depth and concatenates the levels' predictions with
    :func:`concat_levels`.
    """

    def __init__(self, num_classes, num_anchors, depth, class_prior_probability=0.01, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_anchors = int(num_anchors)
        self.depth = int(depth)
        self.class_prior_probability = float(class_prior_probability)

    @staticmethod
    def level_depth(input_shape):
        """The one channel count of all input levels; ``ValueError`` if they differ."""
        channels = {shape[-1] for shape in input_shape}
        if len(channels) != 1:
            raise ValueError(
                f"A weight-shared predictor needs the same depth on every level; got {sorted(channels)}."
            )
        return channels.pop()

    def call(self, features, training=None):
        box_maps, class_maps = [], []
        for level, x in enumerate(features):
            boxes, classes = self.predict_level(x, level, training)
            box_maps.append(boxes)
            class_maps.append(classes)
        return concat_levels(box_maps, class_maps, self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_anchors=self.num_anchors,
            depth=self.depth,
            class_prior_probability=self.class_prior_probability,
        )
        return config
