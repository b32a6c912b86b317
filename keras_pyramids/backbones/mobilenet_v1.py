"""MobileNet v1 as the TF-slim network the PPN and SSD papers used.

Howard et al. 2017, "MobileNets", Table 1; PPN paper section 3 takes
``Conv2d_11_pointwise`` as its base map. The layer layout and names follow
TF-slim's ``mobilenet_v1.py`` (``Conv2d_0``, ``Conv2d_1_depthwise``,
``Conv2d_1_pointwise``, ... ``Conv2d_13_pointwise``) because the paper's
numbers come from that network.

Why not ``keras.applications.MobileNet`` as it is: it pads explicitly and uses
VALID strided convolutions, so a 300x300 image gives an 18x18
``Conv2d_11_pointwise`` map; TF-slim uses SAME padding everywhere and gets the
19x19 map the PPN paper lists. The weights have the same shapes, so the
ImageNet weights of ``keras.applications.MobileNet`` load into this network
(:func:`load_imagenet_weights`) when the user asks for them.
"""

import keras
from keras import layers

from keras_pyramids.blocks import BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM

# (kind, stride, depth) for every layer of slim's MOBILENETV1_CONV_DEFS.
_CONV_DEFS = (
    ("conv", 2, 32),
    ("sep", 1, 64),
    ("sep", 2, 128),
    ("sep", 1, 128),
    ("sep", 2, 256),
    ("sep", 1, 256),
    ("sep", 2, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 2, 1024),
    ("sep", 1, 1024),
)

ENDPOINTS = tuple(
    "Conv2d_0" if i == 0 else f"Conv2d_{i}_pointwise" for i in range(len(_CONV_DEFS))
)
# The backbone contract's level keys (``C<k>``: stride 2^k): the last slim layer at each stride.
LEVELS = {
    "C1": "Conv2d_1_pointwise",
    "C2": "Conv2d_3_pointwise",
    "C3": "Conv2d_5_pointwise",
    "C4": "Conv2d_11_pointwise",
    "C5": "Conv2d_13_pointwise",
}

# The TF Object Detection API's SSD feature extractors on MobileNet v1 (SSD and
# PPN: ``shape_utils.check_min_image_dim(33, preprocessed_inputs)`` in
# ssd_mobilenet_v1_feature_extractor.py / ssd_mobilenet_v1_ppn_feature_extractor.py)
# refuse smaller inputs.
SSD_MIN_IMAGE_SIZE = 33
SSD_MIN_IMAGE_REASON = "the TF Object Detection API's MobileNet v1 SSD feature extractors refuse smaller inputs"


def endpoint_stride(endpoint):
    """Total stride of ``endpoint`` relative to the input image (e.g. 16 for layer 11)."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"Unknown MobileNet v1 endpoint {endpoint!r}; known: {ENDPOINTS}.")
    stride = 1
    for kind_stride_depth in _CONV_DEFS[: ENDPOINTS.index(endpoint) + 1]:
        stride *= kind_stride_depth[1]
    return stride


def _depth(depth, depth_multiplier, min_depth):
    return max(int(depth * depth_multiplier), min_depth)


def conv_bn_relu6(x, filters, kernel_size, strides, name, depthwise=False):
    """Conv (or depthwise conv) without bias -> BatchNorm -> ReLU6, SAME padding."""
    if depthwise:
        conv = layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding="same", use_bias=False, name=name
        )
    else:
        conv = layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name
        )
    x = conv(x)
    x = layers.BatchNormalization(
        epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn"
    )(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x)


def mobilenet_v1(
    input_shape=(300, 300, 3),
    outputs=("C5",),
    depth_multiplier=1.0,
    min_depth=16,
    weights=None,
    name="mobilenet_v1",
):
    """Builds MobileNet v1 (slim layout, SAME padding) returning maps keyed by level.

    The model takes float images in ``[0, 255]`` (``[B, H, W, 3]``) and scales
    them to ``[-1, 1]`` itself, as the ImageNet checkpoint expects.

    Args:
        input_shape: ``(H, W, 3)``; ``H``/``W`` may be ``None`` for any size.
        depth_multiplier: width multiplier alpha of the paper; every depth is
            ``max(int(depth * depth_multiplier), min_depth)``.
        min_depth: smallest allowed depth (slim's ``min_depth``).
        outputs: level keys returned, among ``C1``..``C5`` (:data:`LEVELS`: ``C4``
            is slim's ``Conv2d_11_pointwise``, PPN's base map); layers past the
            deepest one are not built.
        weights: ``None`` (random init) or ``"imagenet"`` (downloads the
            ``keras.applications.MobileNet`` weights, only when asked) or a path
            to a ``.weights.h5`` file of this network.

    Returns:
        ``keras.Model`` mapping images to a dict ``{level: [B, h, w, c]}``;
        a 300x300 input gives a 19x19 ``C4`` map.
    """
    outputs = tuple(outputs)
    unknown = [key for key in outputs if key not in LEVELS]
    if unknown or not outputs:
        raise ValueError(f"Unknown MobileNet v1 level(s) {unknown or outputs}; known: {sorted(LEVELS)}.")
    last = max(ENDPOINTS.index(LEVELS[key]) for key in outputs)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"MobileNet v1 expects input_shape (H, W, 3); got {input_shape}.")

    images = keras.Input(shape=input_shape, name="images")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_unit_range")(images)
    endpoints = {}
    for i, (kind, stride, depth) in enumerate(_CONV_DEFS[: last + 1]):
        depth = _depth(depth, depth_multiplier, min_depth)
        if kind == "conv":
            x = conv_bn_relu6(x, depth, 3, stride, name=ENDPOINTS[i])
        else:
            x = conv_bn_relu6(x, None, 3, stride, name=f"Conv2d_{i}_depthwise", depthwise=True)
            x = conv_bn_relu6(x, depth, 1, 1, name=ENDPOINTS[i])
        endpoints[ENDPOINTS[i]] = x
    model = keras.Model(images, {key: endpoints[LEVELS[key]] for key in outputs}, name=name)
    if weights == "imagenet":
        load_imagenet_weights(model, depth_multiplier)
    elif weights is not None:
        model.load_weights(weights)
    return model


def load_imagenet_weights(model, depth_multiplier=1.0):
    """Copies ``keras.applications.MobileNet`` ImageNet weights into ``model``.

    This downloads the weights (once, into the Keras cache) and therefore needs
    the network; it only runs when the user passes ``weights="imagenet"``.
    """
    if depth_multiplier not in (0.25, 0.5, 0.75, 1.0):
        raise ValueError(
            "ImageNet weights exist for depth_multiplier 0.25, 0.5, 0.75 and 1.0; "
            f"got {depth_multiplier}."
        )
    reference = keras.applications.MobileNet(
        input_shape=(224, 224, 3), alpha=depth_multiplier, include_top=False, weights="imagenet"
    )
    copied = 0
    for layer in model.layers:
        name = layer.name
        suffix = "_bn" if name.endswith("_bn") else ""
        base = name[: -len(suffix)] if suffix else name
        if base == "Conv2d_0":
            ref_name = "conv1"
        elif base.endswith("_depthwise"):
            ref_name = f"conv_dw_{base.split('_')[1]}"
        elif base.endswith("_pointwise"):
            ref_name = f"conv_pw_{base.split('_')[1]}"
        else:
            continue
        ref_layer = reference.get_layer(ref_name + suffix)
        layer.set_weights(ref_layer.get_weights())
        copied += 1
    return copied
