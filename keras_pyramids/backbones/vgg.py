"""VGG-16 "reduced" as SSD uses it, the backbone of M2Det-VGG.

Liu et al., "SSD", section 3 "Base network": VGG-16 with pool5 changed to
3x3 stride 1, fc6/fc7 turned into convolutions (fc6: 3x3, 1024 channels,
dilation 6 -- the "atrous" conv; fc7: 1x1, 1024 channels) whose weights are
subsampled from the ImageNet fc layers, and no dropout / fc8. The pools are
SAME-padded (Caffe's ``ceil_mode``), so a 320x320 image gives conv4_3 40x40
(stride 8) and fc7 20x20 (stride 16); M2Det's FFMv1 fuses these two.

Layer names follow ``keras.applications.VGG16`` (``block1_conv1`` ...) so the
ImageNet weights copy across by name (:func:`load_imagenet_weights`).
"""

import keras
import numpy as np
from keras import layers, ops

# (block, convs, filters) of VGG-16 configuration D.
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
# ImageNet channel means in BGR order (keras.applications.imagenet_utils "caffe" mode).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# The backbone contract's level keys (``C<k>``: stride 2^k): conv4_3 is at stride 8, fc7 at 16.
LEVELS = {"C3": "conv4_3", "C4": "fc7"}


@keras.saving.register_keras_serializable(package="keras_pyramids")
class CaffePreprocess(keras.layers.Layer):
    """RGB ``[0, 255]`` -> BGR minus the ImageNet mean, as the Caffe VGG / ResNet weights expect.

    The same arithmetic as ``keras.applications.vgg16.preprocess_input``, as a
    layer so it is part of the saved model. Input and output ``[B, H, W, 3]``.
    """

    def call(self, images):
        bgr = ops.flip(ops.cast(images, self.compute_dtype), axis=-1)
        return bgr - ops.convert_to_tensor(np.array(CAFFE_BGR_MEAN, "float32"), dtype=self.compute_dtype)


def _width(filters, width_multiplier):
    return max(int(round(filters * width_multiplier)), 8)


def vgg16_reduced(input_shape=(320, 320, 3), outputs=("C3", "C4"), width_multiplier=1.0, weights=None,
                  name="vgg16_reduced"):
    """Builds SSD's reduced VGG-16 returning ``{"C3": conv4_3 [B, H/8, W/8, 512], "C4": fc7 [B, H/16, W/16, 1024]}``.

    Args:
        input_shape: ``(H, W, 3)``; float RGB images in ``[0, 255]``.
        outputs: level keys returned, among ``C3`` and ``C4``.
        width_multiplier: scales every layer's width (1.0 is VGG-16; small
            values make test-sized models). ImageNet weights need 1.0.
        weights: ``None`` (random init), ``"imagenet"`` (copies
            ``keras.applications.VGG16`` weights, downloading them when the
            user asks) or a ``.weights.h5`` path of this network.
    """
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"VGG-16 expects input_shape (H, W, 3); got {input_shape}.")
    unknown = [key for key in outputs if key not in LEVELS]
    if unknown or not outputs:
        raise ValueError(f"Unknown VGG-16 level(s) {unknown or outputs}; known: {sorted(LEVELS)}.")
    if weights == "imagenet" and width_multiplier != 1.0:
        raise ValueError(f"ImageNet weights exist only for width_multiplier 1.0; got {width_multiplier}.")
    images = keras.Input(shape=input_shape, name="images")
    x = CaffePreprocess(name="caffe_preprocess")(images)
    endpoints = {}
    for block, convs, filters in _BLOCKS:
        for i in range(1, convs + 1):
            x = layers.Conv2D(
                _width(filters, width_multiplier), 3, padding="same", activation="relu",
                name=f"block{block}_conv{i}",
            )(x)
        if block == 4:
            endpoints["conv4_3"] = x
        if block < 5:
            # SAME == Caffe's ceil_mode pooling that SSD uses (odd sizes round up).
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
    # pool5 keeps the resolution so fc6/fc7 work at stride 16 (SSD section 3).
    x = layers.MaxPooling2D(3, strides=1, padding="same", name="block5_pool")(x)
    fc_width = _width(1024, width_multiplier)
    x = layers.Conv2D(fc_width, 3, dilation_rate=6, padding="same", activation="relu", name="fc6")(x)
    endpoints["fc7"] = layers.Conv2D(fc_width, 1, activation="relu", name="fc7")(x)
    model = keras.Model(images, {key: endpoints[LEVELS[key]] for key in outputs}, name=name)
    if weights == "imagenet":
        load_imagenet_weights(model)
    elif weights is not None:
        model.load_weights(weights)
    return model


def subsample_fc_weights(fc6_kernel, fc6_bias, fc7_kernel, fc7_bias, spatial=(7, 7), rate=3, keep_every=4):
    """SSD's conversion of VGG's fc6/fc7 into the reduced fc6 (atrous 3x3) and fc7 (1x1).

    fc6 ``[h * w * C, N]`` is reshaped to ``[h, w, C, N]`` (Keras' channels-last
    flatten order), taking every ``rate``-th spatial tap (7x7 -> 3x3, which the
    dilated conv spreads out again) and every ``keep_every``-th output
    (4096 -> 1024); fc7 ``[N, N]`` keeps every ``keep_every``-th input and
    output. Returns ``(fc6_kernel [3, 3, C, N / 4], fc6_bias, fc7_kernel
    [1, 1, N / 4, N / 4], fc7_bias)``.
    """
    h, w = spatial
    channels = fc6_kernel.shape[0] // (h * w)
    fc6 = np.asarray(fc6_kernel).reshape(h, w, channels, -1)[::rate, ::rate, :, ::keep_every]
    fc7 = np.asarray(fc7_kernel)[::keep_every, ::keep_every]
    return (
        fc6,
        np.asarray(fc6_bias)[::keep_every],
        fc7[None, None],
        np.asarray(fc7_bias)[::keep_every],
    )


def load_imagenet_weights(model):
    """Copies ``keras.applications.VGG16`` ImageNet weights into a reduced VGG-16 ``model``.

    Conv layers copy by name; fc6/fc7 are subsampled from fc1/fc2
    (:func:`subsample_fc_weights`). Downloads the weights (once, into the Keras
    cache) and therefore needs the network; only runs when the user asks.
    """
    reference = keras.applications.VGG16(include_top=True, weights="imagenet")
    for block, convs, _ in _BLOCKS:
        for i in range(1, convs + 1):
            name = f"block{block}_conv{i}"
            model.get_layer(name).set_weights(reference.get_layer(name).get_weights())
    fc6_kernel, fc6_bias, fc7_kernel, fc7_bias = subsample_fc_weights(
        *reference.get_layer("fc1").get_weights(), *reference.get_layer("fc2").get_weights()
    )
    model.get_layer("fc6").set_weights([fc6_kernel, fc6_bias])
    model.get_layer("fc7").set_weights([fc7_kernel, fc7_bias])
    return model
