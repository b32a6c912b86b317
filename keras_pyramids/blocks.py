"""Small building blocks shared by pyramids and heads."""

import copy

import keras
from keras import layers

# The TF Object Detection API's SSD / PPN MobileNet configs train with
# ``batch_norm { decay: 0.97 epsilon: 0.001 }``. Slim's ImageNet default decay
# (0.9997) leaves the moving statistics far from the batch statistics after a
# short schedule, and inference then collapses to one constant prediction.
BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.97


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ConvBlock(keras.layers.Layer):
    """Conv2D (no bias) -> BatchNormalization -> activation, SAME padding.

    The "conv + batch norm + ReLU(6)" unit every paper in the zoo uses between
    feature maps. ``activation`` is ``"relu6"`` (MobileNet family, SSD/PPN
    reference), ``"relu"`` (VGG/ResNet family, M2Det) or ``None``.
    ``kernel_initializer`` is a Keras initializer name or config (serialised
    with the layer).

    Input ``[B, H, W, C_in]`` -> output ``[B, ceil(H / s), ceil(W / s), filters]``.
    """

    def __init__(
        self,
        filters,
        kernel_size=1,
        strides=1,
        dilation_rate=1,
        activation="relu6",
        batch_norm_epsilon=BATCH_NORM_EPSILON,
        batch_norm_momentum=BATCH_NORM_MOMENTUM,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.dilation_rate = dilation_rate
        self.activation = activation
        self.batch_norm_epsilon = batch_norm_epsilon
        self.batch_norm_momentum = batch_norm_momentum
        self.kernel_initializer = kernel_initializer
        self.conv = layers.Conv2D(
            self.filters,
            kernel_size,
            strides=strides,
            dilation_rate=dilation_rate,
            padding="same",
            use_bias=False,
            kernel_initializer=keras.initializers.get(copy.deepcopy(kernel_initializer)),
            name="conv",
        )
        self.bn = layers.BatchNormalization(
            epsilon=batch_norm_epsilon, momentum=batch_norm_momentum, name="bn"
        )
        if activation == "relu6":
            self.act = layers.ReLU(6.0, name="relu6")
        elif activation is None:
            self.act = None
        else:
            self.act = layers.Activation(activation, name=str(activation))

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.bn(self.conv(inputs), training=training)
        return self.act(x) if self.act is not None else x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            activation=self.activation,
            batch_norm_epsilon=self.batch_norm_epsilon,
            batch_norm_momentum=self.batch_norm_momentum,
            kernel_initializer=self.kernel_initializer,
        )
        return config
