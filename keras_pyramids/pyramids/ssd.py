"""SSD feature maps: backbone endpoints plus extra stride-2 conv layers.

Liu et al., "SSD", section 2.1 "Multi-scale feature maps for detection" and
Figure 2, in the layout the PPN paper's SSD MobileNet v1 baseline uses (TF
Object Detection API ``multi_resolution_feature_maps``): the maps are
the backbone's ``C4`` and ``C5`` (MobileNet v1's ``Conv2d_11_pointwise`` and
``Conv2d_13_pointwise``) and four new layers of depth
512, 256, 256, 128, each a 1x1 bottleneck to half the depth followed by a 3x3
stride-2 conv.
"""

import keras

from keras_pyramids.blocks import ConvBlock

# ssd_mobilenet_v1_300x300_coco14_sync.config, feature_extractor conv_hyperparams.
EXTRA_LAYER_INITIALIZER = {"class_name": "TruncatedNormal", "config": {"mean": 0.0, "stddev": 0.03}}

SSD_MOBILENET_V1_LAYOUT = {
    "from_layer": ("C4", "C5", "", "", "", ""),
    "layer_depth": (-1, -1, 512, 256, 256, 128),
}


@keras.saving.register_keras_serializable(package="keras_pyramids")
class SSDFeatureMaps(keras.layers.Layer):
    """Multi-resolution SSD feature maps.

    Args:
        from_layer: per level, the backbone map (level key) to take, or ``""`` for a
            new layer computed from the previous level.
        layer_depth: per level, the depth of a new layer (``-1`` for endpoints).
            New depths are ``max(int(depth * depth_multiplier), min_depth)``.
        activation: of the new layers' conv blocks.
        kernel_initializer: of the new layers' convs (Keras initializer name
            or config); default the SSD MobileNet v1 reference config's
            feature-extractor ``truncated_normal_initializer { stddev: 0.03 }``.

    Input: dict of endpoints. Output: list of maps, largest first; a new level
    is ``[B, ceil(h / 2), ceil(w / 2), depth]`` of the level before it.
    """

    def __init__(
        self,
        from_layer=SSD_MOBILENET_V1_LAYOUT["from_layer"],
        layer_depth=SSD_MOBILENET_V1_LAYOUT["layer_depth"],
        depth_multiplier=1.0,
        min_depth=16,
        activation="relu6",
        kernel_initializer=EXTRA_LAYER_INITIALIZER,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(from_layer) != len(layer_depth):
            raise ValueError("from_layer and layer_depth must have the same length.")
        if not from_layer or not from_layer[0]:
            raise ValueError("The first SSD feature map must come from a backbone map (a level key such as 'C4').")
        self.from_layer = tuple(from_layer)
        self.layer_depth = tuple(int(d) for d in layer_depth)
        self.depth_multiplier = float(depth_multiplier)
        self.min_depth = int(min_depth)
        self.activation = activation
        self.kernel_initializer = kernel_initializer
        # One (bottleneck, stride-2 conv) pair per new level; [] for endpoints.
        self.extra = []
        for i, (source, depth) in enumerate(zip(self.from_layer, self.layer_depth)):
            if source:
                self.extra.append([])
                continue
            depth = max(int(depth * self.depth_multiplier), self.min_depth)
            bottleneck = max(depth // 2, self.min_depth)
            self.extra.append(
                [
                    ConvBlock(bottleneck, 1, activation=activation, kernel_initializer=kernel_initializer,
                              name=f"Conv2d_{i}_1x1_{bottleneck}"),
                    ConvBlock(depth, 3, strides=2, activation=activation, kernel_initializer=kernel_initializer,
                              name=f"Conv2d_{i}_3x3_s2_{depth}"),
                ]
            )

    def build(self, input_shape):
        missing = [source for source in self.from_layer if source and source not in input_shape]
        if missing:
            raise ValueError(f"SSD feature maps need backbone maps {missing}; got {sorted(input_shape)}.")
        shape = None
        for source, blocks in zip(self.from_layer, self.extra):
            shape = tuple(input_shape[source]) if source else shape
            for block in blocks:
                block.build(shape)
                shape = block.compute_output_shape(shape)

    def call(self, endpoints, training=None):
        maps = []
        for i, source in enumerate(self.from_layer):
            if source:
                maps.append(endpoints[source])
                continue
            x = maps[-1]
            for block in self.extra[i]:
                x = block(x, training=training)
            maps.append(x)
        return maps

    def get_config(self):
        config = super().get_config()
        config.update(
            from_layer=self.from_layer,
            layer_depth=self.layer_depth,
            depth_multiplier=self.depth_multiplier,
            min_depth=self.min_depth,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
        )
        return config
