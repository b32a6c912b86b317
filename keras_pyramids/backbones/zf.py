"""ZF-5: the five convolutional layers of Zeiler & Fergus' "fast" model as SPP-net uses it.

He et al. 2014 (SPP-net), Table 1 / appendix, "ZF-5"; Zeiler & Fergus 2013,
"Visualizing and Understanding Convolutional Networks", Fig. 3.

=====  =====================================  ===============
layer  definition                             output at 224
=====  =====================================  ===============
conv1  96 filters 7x7, stride 2, ReLU, LRN    110 x 110
pool1  max 3x3, stride 2                      55 x 55
conv2  256 filters 5x5, stride 2, ReLU, LRN   27 x 27
pool2  max 3x3, stride 2                      13 x 13
conv3  384 filters 3x3, ReLU                  13 x 13
conv4  384 filters 3x3, ReLU                  13 x 13
conv5  256 filters 3x3, ReLU                  13 x 13
=====  =====================================  ===============

The paddings reproduce the paper's map sizes, including the 10 x 10 conv5 map
the paper quotes for 180 x 180 inputs: conv1 and conv2 pad one pixel on every
side, and the pools use Caffe's ceil-mode output size, which Keras does not
offer directly (see :func:`_ceil_mode_max_pool`). conv5 has stride 16 relative
to the image.
"""

import keras
from keras import layers, ops

ENDPOINTS = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5")
STRIDE = 16  # conv5 relative to the input image
# Image coordinate (continuous: pixel i spans [i, i + 1)) of the receptive-field
# centre of conv5 cell 0; cell k is centred at STRIDE * k + CONV5_OFFSET. A
# layer with kernel k, stride s and p cells of padding before the first centres
# output i on input s i - p + (k - 1) / 2: conv1 2i + 2, pool1 2i + 1, conv2
# 2i + 1, pool2 2i + 1, conv3-5 i; composed, 16 i + 16 in pixel indices, plus
# half a pixel. The paper's appendix formulas assume 0 (every layer padded by
# floor(k / 2)); this ZF-5 pads conv1/conv2 by 1 and the pools not at all.
CONV5_OFFSET = 16.5


@keras.saving.register_keras_serializable(package="keras_pyramids")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation (Krizhevsky et al. 2012, section 3.3).

    ``y_c = x_c / (bias + alpha / size * sum_{c' in window(c)} x_{c'}^2) ** beta``
    with a window of ``size`` channels centred on ``c`` (Caffe's convention:
    ``alpha`` is divided by the window size). Input and output ``[B, H, W, C]``.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"LocalResponseNormalization: `size` must be an odd positive int; got {size!r}.")
        self.size, self.alpha, self.beta, self.bias = size, alpha, beta, bias

    def call(self, inputs):
        squares = ops.square(inputs)
        radius = self.size // 2
        padded = ops.pad(squares, ((0, 0), (0, 0), (0, 0), (radius, radius)))
        channels = ops.shape(inputs)[-1]
        window_sum = sum(padded[..., k : k + channels] for k in range(self.size))
        return inputs / ops.power(self.bias + (self.alpha / self.size) * window_sum, self.beta)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)
        return config


def _ceil_mode_max_pool(x, name):
    """3x3 / stride 2 max pool with Caffe's output size ``ceil((a - 3) / 2) + 1``.

    Keras' VALID gives ``floor`` and SAME gives ``ceil(a / 2)``; they agree with
    Caffe only for odd or even ``a`` respectively, and the input size is free.
    One extra row and column at the bottom/right followed by VALID pooling
    gives the ceil-mode size for every ``a``. Padding with zeros equals
    padding with ``-inf`` here because the input is post-ReLU (and LRN keeps
    signs), so the padded cells never win the max.
    """
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_ceil_pad")(x)
    return layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def _conv(x, filters, kernel_size, strides, name, pad):
    if pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding="valid" if pad else "same",
        activation="relu", name=name,
    )(x)


def zf5(input_shape=(None, None, 3), outputs=None, name="zf5"):
    """Builds the ZF-5 convolutional layers returning named endpoints.

    The model takes float images in ``[0, 255]`` (``[B, H, W, 3]``) and scales
    them to ``[-1, 1]`` itself, like :func:`keras_pyramids.backbones.mobilenet_v1.mobilenet_v1`
    (the paper subtracts the ImageNet mean instead; a fixed affine map of the
    input is equivalent up to the first layer's weights and bias).

    Args:
        input_shape: ``(H, W, 3)``; ``H``/``W`` may be ``None`` for any size
            (at least 27 x 27 so conv5 is non-empty).
        outputs: endpoint names returned (default ``("conv5",)``), from
            :data:`ENDPOINTS`.
        name: model name.

    Returns:
        ``keras.Model`` mapping images to ``{endpoint: [B, h, w, c]}``; conv5
        is ``[B, 13, 13, 256]`` for 224 x 224 inputs and ``[B, 10, 10, 256]``
        for 180 x 180. Parameters: 3,726,464 (module docstring layers).
    """
    outputs = tuple(outputs or ("conv5",))
    for endpoint in outputs:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"Unknown ZF-5 endpoint {endpoint!r}; known: {ENDPOINTS}.")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"ZF-5 expects input_shape (H, W, 3); got {input_shape}.")

    images = keras.Input(shape=input_shape, name="images")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_unit_range")(images)
    endpoints = {}
    x = _conv(x, 96, 7, 2, "conv1", pad=1)
    x = endpoints["conv1"] = LocalResponseNormalization(name="norm1")(x)
    x = endpoints["pool1"] = _ceil_mode_max_pool(x, "pool1")
    x = _conv(x, 256, 5, 2, "conv2", pad=1)
    x = endpoints["conv2"] = LocalResponseNormalization(name="norm2")(x)
    x = endpoints["pool2"] = _ceil_mode_max_pool(x, "pool2")
    for layer_name, filters in (("conv3", 384), ("conv4", 384), ("conv5", 256)):
        x = endpoints[layer_name] = _conv(x, filters, 3, 1, layer_name, pad=None)
    return keras.Model(images, {k: endpoints[k] for k in outputs}, name=name)
