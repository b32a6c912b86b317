"""The Feature Pyramid Network neck (Lin et al. 2017), with RetinaNet's P6/P7 and Faster R-CNN's P6."""

import keras
from keras import layers, ops

from keras_pyramids.backbones import level_of_key

# How the levels above the backbone's top map are made.
EXTRA_LEVELS = ("conv_from_input", "conv_from_output", "max_pool")

def xavier_fill():
    """Caffe2's ``XavierFill`` as detectron2 initialises FPN convs (``c2_xavier_fill``).

    fvcore's ``c2_xavier_fill`` is ``kaiming_uniform_(a=1)``: uniform in
    ``+-sqrt(3 / fan_in)``, which is Keras' ``VarianceScaling(1, "fan_in",
    "uniform")`` (limit ``sqrt(3 * scale / fan_in)``). A new object per conv:
    one unseeded initializer reused would give every conv the same weights.
    """
    return keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="keras_pyramids")
class FeaturePyramidNetwork(keras.layers.Layer):
    """FPN: a top-down path with lateral connections over backbone maps.

    Lin et al., "Feature Pyramid Networks for Object Detection" (2017),
    section 3 and Figure 3: each backbone map ``C_l`` goes through a 1x1
    lateral conv to ``depth`` channels; the coarser merged map is upsampled 2x
    by nearest neighbour and added to it; a 3x3 conv on each merged map gives
    ``P_l`` ("to reduce the aliasing effect of upsampling"). No non-linearity,
    as in the paper. Convs have biases and detectron2's ``c2_xavier_fill``
    initialisation (:func:`xavier_fill`), zero biases.

    Levels above the backbone (``max_level > top input level``):

    - ``"conv_from_input"``: Lin et al., "Focal Loss for Dense Object
      Detection" (2017), section 4 "Network Architecture" (footnote 2): "P6 is
      obtained via a 3x3 stride-2 conv on C5, and P7 is computed by applying
      ReLU followed by a 3x3 stride-2 conv on P6" (detectron2's
      ``LastLevelP6P7`` on ``res5``, the default).
    - ``"conv_from_output"``: the same convs, but P6 from P5 (torchvision's
      RetinaNet v2 and the Model Garden FPN).
    - ``"max_pool"``: FPN paper section 4.1, for the RPN/Faster R-CNN: "P6 is
      simply a stride two subsampling of P5" (detectron2's ``LastLevelMaxPool``:
      ``max_pool2d(kernel_size=1, stride=2)``); use with ``max_level`` one
      above the top input.

    With the convs, every level from the second extra one on is a ReLU then
    the stride-2 conv on the level below (P7 from ReLU(P6), and so on up to
    ``max_level``); with ``"max_pool"`` each further level subsamples the one
    below.

    Map sizes: each backbone map should be its finer neighbour halved. A
    halving rounded up (odd sizes, e.g. 13 -> 7, as SAME-padded stride-2
    convolutions give) is accepted: the upsampled map is one row/column too
    big and its last row/column is cropped, which keeps cell ``i`` of the
    coarse map over cells ``2i, 2i + 1`` of the fine one. Any other mismatch
    raises a ``ValueError`` naming the sizes. Extra levels have
    ``ceil(size / 2)``.

    Args:
        input_levels: keys of the backbone maps to read, finest first, at
            consecutive levels (``("C3", "C4", "C5")`` for RetinaNet,
            ``("C2", ..., "C5")`` for Faster R-CNN). The level (stride
            ``2^l``) is the number in the key.
        depth: channels of every output map (256 in the papers).
        max_level: level of the last output map (7 for RetinaNet's P7).
        extra_levels: how levels above the top input are made: one of
            ``"conv_from_input"``, ``"conv_from_output"``, ``"max_pool"``, or
            ``None`` (then ``max_level`` must be the top input level).

    Input: a dict of backbone maps containing ``input_levels``
    (``[B, H_l, W_l, C_l]``; other keys are ignored). Output: a list of
    ``max_level - min_level + 1`` maps ``[B, h_l, w_l, depth]``, finest first
    (P3..P7); :attr:`levels` gives their levels.
    """

    def __init__(
        self,
        input_levels=("C3", "C4", "C5"),
        depth=256,
        max_level=7,
        extra_levels="conv_from_input",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_levels = tuple(str(key) for key in input_levels)
        if not self.input_levels:
            raise ValueError("input_levels must name at least one backbone map.")
        levels = [level_of_key(key) for key in self.input_levels]
        if levels != list(range(levels[0], levels[0] + len(levels))):
            raise ValueError(
                f"input_levels must be consecutive levels, finest first; got {self.input_levels} "
                f"(levels {levels})."
            )
        self.depth = int(depth)
        self.max_level = int(max_level)
        self.extra_levels = extra_levels
        self.min_level, top = levels[0], levels[-1]
        num_extra = self.max_level - top
        if num_extra < 0:
            raise ValueError(f"max_level {self.max_level} is below the top input level {top}.")
        if extra_levels is None and num_extra > 0:
            raise ValueError(
                f"max_level {self.max_level} is above the top input level {top}, so extra_levels must "
                f"say how to make them: one of {EXTRA_LEVELS}."
            )
        if extra_levels is not None and extra_levels not in EXTRA_LEVELS:
            raise ValueError(f"extra_levels must be one of {EXTRA_LEVELS} or None; got {extra_levels!r}.")
        self.levels = list(range(self.min_level, self.max_level + 1))

        def conv(kernel_size, name, strides=1):
            return layers.Conv2D(
                self.depth,
                kernel_size,
                strides=strides,
                padding="same",
                kernel_initializer=xavier_fill(),
                bias_initializer="zeros",
                name=name,
            )

        # Named by level (detectron2 ``fpn_lateral3``/``fpn_output3``), so
        # weights move between models with other input levels by name.
        self.lateral_convs = [conv(1, f"lateral_P{level}") for level in levels]
        self.output_convs = [conv(3, f"output_P{level}") for level in levels]
        self.upsample = layers.UpSampling2D(2, interpolation="nearest", name="upsample")
        self.extra_ops = []
        for level in range(top + 1, self.max_level + 1):
            if extra_levels == "max_pool":
                self.extra_ops.append(
                    layers.MaxPooling2D(1, strides=2, padding="same", name=f"subsample_P{level}")
                )
            else:
                self.extra_ops.append(conv(3, f"extra_P{level}", strides=2))

    def build(self, input_shape):
        missing = [key for key in self.input_levels if key not in input_shape]
        if missing:
            raise ValueError(
                f"FeaturePyramidNetwork reads backbone maps {list(self.input_levels)}, but the input has "
                f"no {missing}; it has {sorted(input_shape)}."
            )
        shapes = [tuple(input_shape[key]) for key in self.input_levels]
        for fine_key, coarse_key, fine, coarse in zip(
            self.input_levels, self.input_levels[1:], shapes, shapes[1:]
        ):
            self._check_halved(fine_key, coarse_key, fine, coarse)
        merged = None
        for conv, output_conv, shape in zip(self.lateral_convs, self.output_convs, shapes):
            conv.build(shape)
            merged = shape[:-1] + (self.depth,)
            output_conv.build(merged)
        shape = shapes[-1] if self.extra_levels == "conv_from_input" else merged
        for op in self.extra_ops:
            op.build(shape)
            shape = op.compute_output_shape(shape)

    @staticmethod
    def _check_halved(fine_key, coarse_key, fine, coarse):
        for axis, name in ((1, "height"), (2, "width")):
            if fine[axis] is None or coarse[axis] is None:
                continue
            if 2 * coarse[axis] not in (fine[axis], fine[axis] + 1):
                raise ValueError(
                    f"FeaturePyramidNetwork: the {name} of {coarse_key} is {coarse[axis]}, so its 2x "
                    f"upsampling has {name} {2 * coarse[axis]}, which does not match {fine_key} "
                    f"({name} {fine[axis]}; a map must be its finer neighbour halved, rounded up). "
                    f"Map sizes: {fine_key} {fine[1:3]}, {coarse_key} {coarse[1:3]}."
                )

    def call(self, endpoints):
        inputs = [endpoints[key] for key in self.input_levels]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            top_down = self.upsample(merged[0])
            # Odd sizes: the upsampled map is one row/column too big (checked in build()).
            top_down = top_down[:, : ops.shape(lateral)[1], : ops.shape(lateral)[2], :]
            merged.insert(0, lateral + top_down)
        outputs = [conv(x) for conv, x in zip(self.output_convs, merged)]
        x = inputs[-1] if self.extra_levels == "conv_from_input" else outputs[-1]
        for i, op in enumerate(self.extra_ops):
            if i > 0 and self.extra_levels != "max_pool":
                x = ops.relu(x)
            x = op(x)
            outputs.append(x)
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = [tuple(input_shape[key])[:-1] + (self.depth,) for key in self.input_levels]
        shape = shapes[-1]
        for _ in self.extra_ops:
            shape = (shape[0],) + tuple(None if s is None else -(-s // 2) for s in shape[1:3]) + (self.depth,)
            shapes.append(shape)
        return shapes

    def get_config(self):
        config = super().get_config()
        config.update(
            input_levels=list(self.input_levels),
            depth=self.depth,
            max_level=self.max_level,
            extra_levels=self.extra_levels,
        )
        return config
