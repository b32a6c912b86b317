"""The max-pool pyramid of the Pooling Pyramid Network (PPN paper, section 2.2 and 2.3)."""

import keras
from keras import layers

from keras_pyramids.blocks import ConvBlock


@keras.saving.register_keras_serializable(package="keras_pyramids")
class PoolingPyramid(keras.layers.Layer):
    """Shrinks one base feature map by repeated 2x2 stride-2 max pooling.

    PPN paper section 2.3 / Figure 1 (right): an optional 1x1 convolution maps
    the backbone feature to ``base_depth`` channels, then a series of stride-2
    max pools builds the pyramid; max pooling keeps every level in the same
    embedding space so one box predictor can serve all of them (section 2.2).
    Pools are SAME-padded like the reference (``MaxPool2d_i_2x2``), so a 19x19
    map gives 19, 10, 5, 3, 2, 1.

    Input: a dict of backbone maps containing ``level`` (``[B, H, W, C]``;
    PPN takes MobileNet v1's ``C4``, slim's ``Conv2d_11_pointwise``). Output: a list of ``num_levels`` maps
    ``[B, ceil(H / 2^l), ceil(W / 2^l), C']``, largest first, with
    ``C' = base_depth`` if ``base_depth > 0`` else ``C``.
    """

    def __init__(self, level="C4", num_levels=6, base_depth=0, **kwargs):
        super().__init__(**kwargs)
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1; got {num_levels}.")
        self.level = level
        self.num_levels = int(num_levels)
        self.base_depth = int(base_depth)
        self.base_conv = (
            ConvBlock(self.base_depth, 1, name=f"Base_Conv2d_1x1_{self.base_depth}")
            if self.base_depth > 0
            else None
        )
        self.pools = [
            layers.MaxPooling2D(2, strides=2, padding="same", name=f"MaxPool2d_{i}_2x2")
            for i in range(self.num_levels - 1)
        ]

    def build(self, input_shape):
        if self.base_conv is not None:
            self.base_conv.build(input_shape[self.level])

    def call(self, endpoints, training=None):
        x = endpoints[self.level]
        if self.base_conv is not None:
            x = self.base_conv(x, training=training)
        maps = [x]
        for pool in self.pools:
            maps.append(pool(maps[-1]))
        return maps

    def get_config(self):
        config = super().get_config()
        config.update(level=self.level, num_levels=self.num_levels, base_depth=self.base_depth)
        return config
