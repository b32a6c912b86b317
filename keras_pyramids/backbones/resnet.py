"""ResNet-50/101 (v1 bottleneck) as a re-wireable detection backbone.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
Table 1: a 7x7/2 convolution and a 3x3/2 max pool (``conv1``), then the
stages ``conv2_x`` .. ``conv5_x`` of 3, 4, 6, 3 (50 layers) or 3, 4, 23, 3
(101 layers) bottleneck blocks (1x1, 3x3, 1x1 with 4x expansion; section 4.1
"Deeper Bottleneck Architectures", Fig. 5 right) of width 64, 128, 256, 512.
Every convolution is bias-free and followed by batch norm, as in torchvision
and detectron2; the first block of each stage has a 1x1 projection shortcut
(option B of section 3.3).

The network is built from three small layers, :class:`ResNetStem`
(``conv1``), :class:`ResNetStage` (``conv2`` ...) and
:class:`BottleneckBlock`, and re-wired through :func:`resnet`:

- per-stage stride and dilation: a stage can keep its input size
  (DetNet-style, stride 1 and dilation 2), e.g. ``conv5_x`` at stride 16,
  returned as ``"C4b"`` (keys name strides, see below);
- extra stages after ``conv5`` (``conv6``, ``conv7``, ...; a stride-2 one
  after a standard ``conv5`` is ``"C6"``): IPG-Net section 3.4 adds stages of two bottleneck blocks (see
  :data:`IPG_EXTRA_STAGE` for what the paper fixes and what it leaves open);
- the 3x3 convolution of each stage comes from a named factory
  (:func:`register_conv3x3`), so POD can swap in its scale-learning
  convolution by name and the model still saves as ``.keras``;
- ``stride_in_1x1``: where a stage's stride sits. ``True`` (default) puts it
  in the first 1x1 convolution, as the original Caffe/MSRA model,
  ``keras.applications`` and detectron2 (``STRIDE_IN_1X1=True``), which is what
  the ``keras.applications`` ImageNet weights were trained with; ``False``
  puts it in the 3x3 convolution (torchvision's "ResNet v1.5");
- detectron2's ``FREEZE_AT`` (``freeze_at``) and frozen batch norm
  (``frozen_batch_norm``) for fine-tuning.

Layer names follow ``keras.applications.ResNet50``: ``conv1_conv``,
``conv1_bn``, ``conv{stage}_block{i}_{0,1,2,3}_{conv,bn}`` (``0`` is the
projection shortcut). They do not depend on strides, dilations or the 3x3
factory, so weights move between rebuilds by name (:func:`copy_weights`), and
the ImageNet weights of ``keras.applications`` copy in by name with each conv
bias folded into the following batch norm
(:func:`load_keras_applications_weights`).

Backbone contract: the model takes float RGB images ``[B, H, W, 3]`` in
``[0, 255]`` (it converts them to the Caffe BGR-minus-mean input the
``keras.applications`` weights expect) and returns ``{key: [B, h, w, c]}``
keyed by stride as :mod:`keras_pyramids.backbones` defines: ``"C2"`` ..
``"C5"`` for ``conv2_x`` .. ``conv5_x`` with the standard strides (4 .. 32,
256 .. 2048 channels); a stage that keeps its input's stride gets the next
letter (``"C4b"`` for a dilated ``conv5_x``), so a key's number always gives
its stride ``2^k``.
"""

import dataclasses
import os
import re
import warnings

import keras
import numpy as np
from keras import layers, ops

from keras_pyramids.backbones import level_keys
from keras_pyramids.backbones.vgg import CaffePreprocess

# Table 1: bottleneck blocks per stage conv2_x .. conv5_x.
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Table 1: bottleneck width (the 1x1 / 3x3 filters) of conv2_x .. conv5_x.
STAGE_FILTERS = (64, 128, 256, 512)
EXPANSION = 4
# keras.applications' value (cuDNN once required eps > 1e-5); torchvision and
# detectron2 use 1e-5. The copy of keras.applications weights is exact with it.
BATCH_NORM_EPSILON = 1.001e-5
# PyTorch's default (momentum 0.1 there = 0.9 in Keras), as torchvision/detectron2.
BATCH_NORM_MOMENTUM = 0.9
# conv1 (stride 2) + pool1 (stride 2).
STEM_STRIDE = 4
# IPG-Net section 3.4: "each new stage contains two Bottleneck modules, same
# as ResNet". The paper's Table 3 "7(keep)" row (the last 3 stages keep their
# spatial size, "as [DetNet] proposed") implies the other rows halve the size,
# so stride 2. The paper does not give the extra stages' width; Fig. 2's caption
# ("the output feature's channel dimension of level i is C1 x 2^i, C1 = 256,
# consistent with the backbone feature") is written for the four ResNet
# stages. We keep conv5's width (512, 2048 channels out), as DetNet keeps its
# last width for its extra stages; ``filters=1024`` follows the caption's
# doubling instead.
IPG_EXTRA_STAGE = {"filters": 512, "blocks": 2, "stride": 2, "dilation": 1}

_CONV3X3_FACTORIES = {}


def register_conv3x3(name):
    """Registers ``factory(filters, kernel_size, strides, dilation_rate, name) -> keras layer`` as ``name``.

    Use as a decorator. The returned layer maps ``[B, H, W, C]`` to
    ``[B, ceil(H / strides), ceil(W / strides), filters]`` (SAME padding) and
    must carry the ``name`` it is given (so weights copy by name). A spec
    ``{"name": name, **options}`` passes ``options`` as keyword arguments too
    (the same options reach every block of a stage; a factory may pick its
    layer's own by ``name``). Blocks store only the spec in their config, so a
    model built with a registered
    factory saves as ``.keras`` and loads wherever the registering module has
    been imported.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A conv3x3 factory needs a non-empty string name; got {name!r}.")

    def decorator(factory):
        known = _CONV3X3_FACTORIES.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (factory.__module__, factory.__qualname__):
            raise ValueError(
                f"conv3x3 factory {name!r} is already registered ({known.__module__}.{known.__qualname__})."
            )
        _CONV3X3_FACTORIES[name] = factory
        return factory

    return decorator


def conv3x3_names():
    """Names accepted by ``conv3x3=`` (see :func:`register_conv3x3`)."""
    return sorted(_CONV3X3_FACTORIES)


def _conv3x3_factory(spec):
    """``(factory, options)`` of a conv3x3 spec: a registered name, or ``{"name": name, **options}``
    whose options go to the factory as keyword arguments (e.g. POD's per-layer dilations)."""
    options = {}
    if isinstance(spec, dict):
        options = {k: v for k, v in spec.items() if k != "name"}
        spec = spec.get("name")
    if not isinstance(spec, str) or spec not in _CONV3X3_FACTORIES:
        raise ValueError(
            f"Unknown conv3x3 {spec!r}; registered: {conv3x3_names()} (a custom one must be registered with "
            "keras_pyramids.backbones.resnet.register_conv3x3 before the model is built or loaded; a spec with "
            "options is a dict {'name': <registered name>, <option>: <value>, ...})."
        )
    return _CONV3X3_FACTORIES[spec], options


@register_conv3x3("conv")
def plain_conv3x3(filters, kernel_size, strides, dilation_rate, name):
    """The plain bias-free convolution of ResNet.

    SAME padding: with ``strides=2`` (only when ``stride_in_1x1=False``) an even
    input is padded on the bottom/right only (TensorFlow's rule), where
    torchvision pads one pixel on each side.
    """
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=False,
        name=name,
    )


@keras.saving.register_keras_serializable(package="keras_pyramids")
class FrozenBatchNormalization(layers.BatchNormalization):
    """Batch norm with fixed statistics and affine parameters (detectron2/torchvision ``FrozenBatchNorm2d``).

    Always normalises with the moving mean/variance, even when called with
    ``training=True``, and has no trainable weights; setting ``trainable = True``
    (for example through ``model.trainable = True``) does not unfreeze it. The
    weights are those of :class:`keras.layers.BatchNormalization` (``gamma``,
    ``beta``, ``moving_mean``, ``moving_variance``), so they copy across.
    Input and output ``[..., C]``.
    """

    @property
    def trainable(self):
        return False

    @trainable.setter
    def trainable(self, value):
        layers.BatchNormalization.trainable.fset(self, False)


def _batch_norm(name, epsilon, momentum, frozen):
    cls = FrozenBatchNormalization if frozen else layers.BatchNormalization
    return cls(epsilon=epsilon, momentum=momentum, name=name)


def _check_positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer; got {value!r}.")
    return int(value)


class _ResNetLayer(keras.layers.Layer):
    """Shared batch-norm options and the leaf-layer walk of the ResNet layers."""

    def __init__(
        self,
        batch_norm_epsilon=BATCH_NORM_EPSILON,
        batch_norm_momentum=BATCH_NORM_MOMENTUM,
        frozen_batch_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.frozen_batch_norm = bool(frozen_batch_norm)

    def _norm(self, name):
        return _batch_norm(name, self.batch_norm_epsilon, self.batch_norm_momentum, self.frozen_batch_norm)

    def leaf_layers(self):
        """The convolutions and batch norms, in order, each with a network-wide unique name."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            batch_norm_epsilon=self.batch_norm_epsilon,
            batch_norm_momentum=self.batch_norm_momentum,
            frozen_batch_norm=self.frozen_batch_norm,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ResNetStem(_ResNetLayer):
    """``conv1`` and ``pool1`` of He et al. Table 1: 7x7/2 conv (64), batch norm, ReLU, 3x3/2 max pool.

    Padding as Caffe/torchvision and ``keras.applications``: 3 pixels around
    the convolution, 1 around the pool (zeros equal -inf there: the input is
    non-negative after the ReLU). Input ``[B, H, W, 3]`` -> output
    ``[B, ceil(H / 4), ceil(W / 4), 64]`` (for even ``H``, ``W``; in general
    ``floor((floor((H - 1) / 2) + 1 - 1) / 2) + 1``).
    """

    def __init__(self, filters=64, **kwargs):
        super().__init__(**kwargs)
        self.filters = _check_positive_int(filters, "Stem filters")
        self.conv_pad = layers.ZeroPadding2D(3, name="conv1_pad")
        self.conv = layers.Conv2D(self.filters, 7, strides=2, use_bias=False, name="conv1_conv")
        self.bn = self._norm("conv1_bn")
        self.pool_pad = layers.ZeroPadding2D(1, name="pool1_pad")
        self.pool = layers.MaxPooling2D(3, strides=2, name="pool1_pool")

    def build(self, input_shape):
        shape = self.conv_pad.compute_output_shape(input_shape)
        self.conv.build(shape)
        self.bn.build(self.conv.compute_output_shape(shape))

    def call(self, images, training=None):
        x = ops.relu(self.bn(self.conv(self.conv_pad(images)), training=training))
        return self.pool(self.pool_pad(x))

    def compute_output_shape(self, input_shape):
        shape = self.conv.compute_output_shape(self.conv_pad.compute_output_shape(input_shape))
        return self.pool.compute_output_shape(self.pool_pad.compute_output_shape(shape))

    def leaf_layers(self):
        return [self.conv, self.bn]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class BottleneckBlock(_ResNetLayer):
    """The v1 bottleneck residual block (He et al. section 4.1, Fig. 5 right).

    ``relu(bn(1x1, filters) -> relu -> bn(3x3, filters, dilation) -> relu ->
    bn(1x1, 4 * filters) + shortcut)``, every convolution bias-free. The
    shortcut is the identity or, with ``projection=True``, a strided 1x1
    convolution to ``4 * filters`` channels plus batch norm (option B, section
    3.3). ``strides`` sits in the first 1x1 (``stride_in_1x1=True``: Caffe/MSRA,
    ``keras.applications``, detectron2's default) or in the 3x3 (torchvision's
    v1.5). ``conv3x3`` names the factory of the 3x3 convolution
    (:func:`register_conv3x3`).

    Sublayers are named ``{name}_0_conv``/``_0_bn`` (projection),
    ``{name}_1_conv`` .. ``{name}_3_bn`` as in ``keras.applications``.

    Input ``[B, H, W, C]`` (``C == 4 * filters`` without projection) -> output
    ``[B, ceil(H / strides), ceil(W / strides), 4 * filters]``.
    """

    def __init__(
        self,
        filters,
        strides=1,
        dilation_rate=1,
        projection=False,
        stride_in_1x1=True,
        conv3x3="conv",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _check_positive_int(filters, "Bottleneck filters")
        self.strides = _check_positive_int(strides, "Bottleneck strides")
        self.dilation_rate = _check_positive_int(dilation_rate, "Bottleneck dilation_rate")
        self.projection = bool(projection)
        self.stride_in_1x1 = bool(stride_in_1x1)
        self.conv3x3 = conv3x3
        factory, options = _conv3x3_factory(conv3x3)
        stride_1x1, stride_3x3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        if stride_3x3 > 1 and self.dilation_rate > 1:
            raise ValueError(
                f"Block {self.name}: a 3x3 convolution cannot have both stride {stride_3x3} and dilation "
                f"{self.dilation_rate}; use stride_in_1x1=True or stride 1 (the dilation then replaces the stride)."
            )
        prefix = self.name
        self.conv1 = layers.Conv2D(self.filters, 1, strides=stride_1x1, use_bias=False, name=f"{prefix}_1_conv")
        self.bn1 = self._norm(f"{prefix}_1_bn")
        self.conv2 = factory(self.filters, 3, stride_3x3, self.dilation_rate, f"{prefix}_2_conv", **options)
        if not isinstance(self.conv2, keras.layers.Layer) or self.conv2.name != f"{prefix}_2_conv":
            raise ValueError(
                f"conv3x3 factory {conv3x3!r} must return a keras layer named {prefix}_2_conv; got {self.conv2!r}."
            )
        self.bn2 = self._norm(f"{prefix}_2_bn")
        self.conv3 = layers.Conv2D(EXPANSION * self.filters, 1, use_bias=False, name=f"{prefix}_3_conv")
        self.bn3 = self._norm(f"{prefix}_3_bn")
        if self.projection:
            self.shortcut_conv = layers.Conv2D(
                EXPANSION * self.filters, 1, strides=self.strides, use_bias=False, name=f"{prefix}_0_conv"
            )
            self.shortcut_bn = self._norm(f"{prefix}_0_bn")
        else:
            self.shortcut_conv = self.shortcut_bn = None

    def build(self, input_shape):
        if not self.projection and (input_shape[-1] != EXPANSION * self.filters or self.strides != 1):
            raise ValueError(
                f"Block {self.name} has an identity shortcut, so it needs stride 1 and {EXPANSION * self.filters} "
                f"input channels; got stride {self.strides} and input shape {tuple(input_shape)}."
            )
        shape = input_shape
        for layer in (self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.projection:
            self.shortcut_conv.build(input_shape)
            self.shortcut_bn.build(self.shortcut_conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        if self.projection:
            shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
        else:
            shortcut = inputs
        x = ops.relu(self.bn1(self.conv1(inputs), training=training))
        x = ops.relu(self.bn2(self.conv2(x), training=training))
        x = self.bn3(self.conv3(x), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for layer in (self.conv1, self.conv2, self.conv3):
            shape = layer.compute_output_shape(shape)
        return shape

    def leaf_layers(self):
        shortcut = [self.shortcut_conv, self.shortcut_bn] if self.projection else []
        return shortcut + [self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3]

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            projection=self.projection,
            stride_in_1x1=self.stride_in_1x1,
            conv3x3=self.conv3x3,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ResNetStage(_ResNetLayer):
    """One stage ``conv{k}_x`` of He et al. Table 1: ``blocks`` bottleneck blocks of width ``filters``.

    The first block carries the stage's stride and a projection shortcut; the
    others keep the shape. Every block's 3x3 uses ``dilation_rate`` (as
    detectron2's ``RES5_DILATION``; a DetNet-style stage is stride 1, dilation
    2). Blocks are named ``{name}_block1`` ...

    Input ``[B, H, W, C]`` -> output ``[B, ceil(H / strides), ceil(W / strides), 4 * filters]``.
    """

    def __init__(
        self,
        filters,
        blocks,
        strides=2,
        dilation_rate=1,
        stride_in_1x1=True,
        conv3x3="conv",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _check_positive_int(filters, "Stage filters")
        self.num_blocks = _check_positive_int(blocks, "Stage blocks")
        self.strides = _check_positive_int(strides, "Stage strides")
        self.dilation_rate = _check_positive_int(dilation_rate, "Stage dilation_rate")
        self.stride_in_1x1 = bool(stride_in_1x1)
        self.conv3x3 = conv3x3
        norm = dict(
            batch_norm_epsilon=self.batch_norm_epsilon,
            batch_norm_momentum=self.batch_norm_momentum,
            frozen_batch_norm=self.frozen_batch_norm,
        )
        self.blocks = [
            BottleneckBlock(
                self.filters,
                strides=self.strides if i == 0 else 1,
                dilation_rate=self.dilation_rate,
                projection=i == 0,
                stride_in_1x1=self.stride_in_1x1,
                conv3x3=conv3x3,
                name=f"{self.name}_block{i + 1}",
                **norm,
            )
            for i in range(self.num_blocks)
        ]

    def build(self, input_shape):
        shape = input_shape
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def call(self, inputs, training=None):
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for block in self.blocks:
            shape = block.compute_output_shape(shape)
        return shape

    def leaf_layers(self):
        return [layer for block in self.blocks for layer in block.leaf_layers()]

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            blocks=self.num_blocks,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            stride_in_1x1=self.stride_in_1x1,
            conv3x3=self.conv3x3,
        )
        return config


def _extra_stage_specs(extra_stages):
    """Normalises ``extra_stages`` (an int or a sequence of dicts) to a list of full dicts."""
    if isinstance(extra_stages, bool):
        raise ValueError(f"extra_stages must be an int or a sequence of dicts; got {extra_stages!r}.")
    if isinstance(extra_stages, (int, np.integer)):
        if extra_stages < 0:
            raise ValueError(f"extra_stages must be >= 0; got {extra_stages}.")
        return [dict(IPG_EXTRA_STAGE) for _ in range(int(extra_stages))]
    specs = []
    for i, spec in enumerate(extra_stages or ()):
        if not isinstance(spec, dict):
            raise ValueError(f"extra_stages[{i}] must be a dict with keys {sorted(IPG_EXTRA_STAGE)}; got {spec!r}.")
        unknown = sorted(set(spec) - set(IPG_EXTRA_STAGE))
        if unknown:
            raise ValueError(f"extra_stages[{i}] has unknown keys {unknown}; known: {sorted(IPG_EXTRA_STAGE)}.")
        full = dict(IPG_EXTRA_STAGE, **spec)
        for key, value in full.items():
            _check_positive_int(value, f"extra_stages[{i}][{key!r}]")
        specs.append(full)
    return specs


def _scaled(filters, width):
    # At least 8 channels so tiny test widths keep every stage meaningful.
    return max(int(round(filters * width)), 8)


def _per_stage(value, count, what, check):
    values = tuple(value) if isinstance(value, (tuple, list)) else None
    if values is None or len(values) != count:
        raise ValueError(f"{what} needs one value per stage ({count}); got {value!r}.")
    return tuple(check(v, f"{what} entry") for v in values)


def resnet(
    depth=50,
    input_shape=(224, 224, 3),
    outputs=("C3", "C4", "C5"),
    strides=(1, 2, 2, 2),
    dilations=(1, 1, 1, 1),
    extra_stages=(),
    conv3x3="conv",
    stride_in_1x1=True,
    freeze_at=0,
    frozen_batch_norm=False,
    batch_norm_epsilon=BATCH_NORM_EPSILON,
    batch_norm_momentum=BATCH_NORM_MOMENTUM,
    width=1.0,
    weights=None,
    name=None,
    after_stage=None,
):
    """Builds ResNet-50/101 returning ``{key: [B, h, w, c]}`` for the ``outputs`` keys.

    Args:
        depth: 50 or 101 (He et al. Table 1).
        input_shape: ``(H, W, 3)``; float RGB images in ``[0, 255]``. ``H``/``W``
            may be ``None``, but detectors need them fixed (strides come from
            static shapes).
        outputs: keys of the stages to return, named by their stride
            (``"C2"`` .. ``"C5"`` for ``conv2_x`` .. ``conv5_x`` by default;
            ``"C4b"`` for a ``conv5_x`` kept at stride 16; ``"C6"`` ... for
            extra stages). Only the stages up to the deepest requested key are built.
        strides: stride of ``conv2`` .. ``conv5`` (after the stride-4 stem);
            Table 1 has ``(1, 2, 2, 2)``.
        dilations: dilation of the 3x3 convolutions of ``conv2`` .. ``conv5``.
            ``strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)`` keeps ``conv5_x``
            at stride 16, key ``"C4b"`` (DetNet / detectron2 ``RES5_DILATION=2``).
        extra_stages: stages appended after ``conv5``: an int ``n`` (``n``
            copies of :data:`IPG_EXTRA_STAGE`: two blocks of width 512, stride
            2) or a sequence of dicts with keys ``filters`` (bottleneck width;
            output ``4 * filters`` channels), ``blocks``, ``stride``,
            ``dilation``, defaulting to :data:`IPG_EXTRA_STAGE`; keyed by
            their stride like the others.
        conv3x3: name of the 3x3 convolution factory (:func:`register_conv3x3`)
            for every stage, or a tuple with one name per stage (``conv2`` ..
            the last extra stage). A name may also be a dict ``{"name": name,
            **options}``: the options go to the factory as keyword arguments.
        stride_in_1x1: ``True`` puts a stage's stride in the first 1x1 (Caffe /
            ``keras.applications`` / detectron2, what the ImageNet weights
            expect), ``False`` in the 3x3 (torchvision v1.5).
        freeze_at: detectron2's ``FREEZE_AT``: 0 freezes nothing, 1 the stem,
            2 the stem and ``conv2``, ... Frozen parts have no trainable weights
            and their batch norms use the moving statistics.
        frozen_batch_norm: every batch norm becomes a
            :class:`FrozenBatchNormalization` (detectron2's ``FrozenBN``).
        batch_norm_epsilon, batch_norm_momentum: batch-norm settings.
        width: multiplies every stage's and the stem's channels (1.0 is the
            paper's network; small values make test-sized models that train
            from scratch on a CPU). ImageNet weights need 1.0.
        weights: ``None`` (random init), ``"imagenet"`` (copies
            ``keras.applications.ResNet50/101`` ImageNet weights, downloading
            them, only when asked; extra stages stay random) or a
            ``.weights.h5`` path of this same network.
        name: model name, default ``"resnet{depth}"``.
        after_stage: ``None``, or ``after_stage(stage, inputs, x) -> x`` called
            on each built stage's output while the functional graph is made
            (``stage`` 1 is ``conv2_x``, ``inputs`` the preprocessed images);
            what it returns replaces the stage's output in the stream and in
            the outputs. IPG-Net's fusion modules enter this way
            (:mod:`keras_pyramids.backbones.ipg_net`).

    Returns:
        A functional ``keras.Model`` mapping ``[B, H, W, 3]`` to a dict.
    """
    if depth not in DEPTHS:
        raise ValueError(f"Unknown ResNet depth {depth!r}; known: {sorted(DEPTHS)}.")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"ResNet expects input_shape (H, W, 3); got {input_shape}.")
    strides = _per_stage(strides, 4, "strides", _check_positive_int)
    dilations = _per_stage(dilations, 4, "dilations", _check_positive_int)
    extras = _extra_stage_specs(extra_stages)
    num_stages = 4 + len(extras)
    if isinstance(conv3x3, (str, dict)):
        conv3x3 = (conv3x3,) * num_stages
    conv3x3 = _per_stage(conv3x3, num_stages, "conv3x3", lambda v, what: v)
    for conv_name in conv3x3:
        _conv3x3_factory(conv_name)
    stage_strides = list(strides) + [spec["stride"] for spec in extras]
    keys = level_keys(STEM_STRIDE * np.cumprod(stage_strides))
    if isinstance(outputs, str) or not outputs:
        raise ValueError(f"outputs must be a non-empty sequence of keys like ('C3', 'C4', 'C5'); got {outputs!r}.")
    unknown = [key for key in outputs if key not in keys]
    if unknown:
        raise ValueError(
            f"Unknown ResNet output key(s) {unknown}: with these strides and {len(extras)} extra stage(s) the "
            f"stages give {', '.join(keys)} (a key names the stride, 'C<k>' = 2^k; a stage that keeps the "
            "stride adds a letter; add extra_stages for deeper keys)."
        )
    levels = [keys.index(key) + 2 for key in outputs]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs has repeated keys: {outputs!r}.")
    if isinstance(freeze_at, bool) or not isinstance(freeze_at, (int, np.integer)) or not 0 <= freeze_at <= num_stages + 1:
        raise ValueError(f"freeze_at must be an int in 0..{num_stages + 1} (detectron2's FREEZE_AT); got {freeze_at!r}.")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number; got {width!r}.")
    if weights == "imagenet" and width != 1.0:
        raise ValueError(f"ImageNet weights exist only for width 1.0; got width {width}.")
    if weights == "imagenet" and not stride_in_1x1:
        raise ValueError(
            "The keras.applications ImageNet weights were trained with the stride in the first 1x1 "
            "convolution; use stride_in_1x1=True with weights='imagenet'."
        )
    if weights not in (None, "imagenet") and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, 'imagenet' or a path; got {weights!r}.")

    norm = dict(
        batch_norm_epsilon=batch_norm_epsilon,
        batch_norm_momentum=batch_norm_momentum,
        frozen_batch_norm=frozen_batch_norm,
    )
    stage_specs = [
        (_scaled(STAGE_FILTERS[i], width), DEPTHS[depth][i], strides[i], dilations[i]) for i in range(4)
    ] + [(_scaled(s["filters"], width), s["blocks"], s["stride"], s["dilation"]) for s in extras]

    images = keras.Input(shape=input_shape, name="images")
    x = preprocessed = CaffePreprocess(name="caffe_preprocess")(images)
    stem = ResNetStem(filters=_scaled(64, width), name="conv1", **norm)
    x = stem(x)
    built = [stem]
    features = {}
    for index in range(max(levels) - 1):
        level = index + 2
        filters, blocks, stride, dilation = stage_specs[index]
        stage = ResNetStage(
            filters,
            blocks,
            strides=stride,
            dilation_rate=dilation,
            stride_in_1x1=stride_in_1x1,
            conv3x3=conv3x3[index],
            name=f"conv{level}",
            **norm,
        )
        x = stage(x)
        if after_stage is not None:
            x = after_stage(index + 1, preprocessed, x)
        built.append(stage)
        features[keys[index]] = x
    for layer in built[:freeze_at]:
        layer.trainable = False
    model = keras.Model(images, {key: features[key] for key in outputs}, name=name or f"resnet{depth}")
    if weights == "imagenet":
        application = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}[depth]
        report = load_keras_applications_weights(model, application(include_top=False, weights="imagenet"))
        # Sublayers a 3x3 factory's layer declares new (``new_parameters``, e.g. POD's scale predictor)
        # have no ImageNet counterpart by design.
        new = {f"{leaf.name}/{part}/" for layer in model.layers if isinstance(layer, _ResNetLayer)
               for leaf in layer.leaf_layers() for part in getattr(leaf, "new_parameters", ())}
        standard = [k for k in report.missing if (m := re.match(r"conv(\d+)_", k)) and int(m.group(1)) <= 5
                    and not any(k.startswith(prefix) for prefix in new)]
        if standard:
            warnings.warn(
                f"ImageNet weights did not cover {len(standard)} weights: {standard[:5]}"
                f"{' ...' if len(standard) > 5 else ''} (they keep their initial values).",
                stacklevel=2,
            )
    elif weights is not None:
        model.load_weights(weights)
    return model


def resnet50(input_shape=(224, 224, 3), outputs=("C3", "C4", "C5"), **kwargs):
    """ResNet-50 (3, 4, 6, 3 blocks); arguments as :func:`resnet`."""
    return resnet(50, input_shape, outputs, **kwargs)


def resnet101(input_shape=(224, 224, 3), outputs=("C3", "C4", "C5"), **kwargs):
    """ResNet-101 (3, 4, 23, 3 blocks); arguments as :func:`resnet`."""
    return resnet(101, input_shape, outputs, **kwargs)


def named_weights(model):
    """``{"<layer>/<weight>": variable}`` for every weight of ``model``, keyed by leaf-layer name.

    ResNet layers contribute their convolutions and batch norms (names as
    ``keras.applications``, e.g. ``"conv3_block1_2_conv/kernel"``); any other
    layer (e.g. in ``keras.applications.ResNet50`` itself) is a leaf. A leaf
    built from sublayers (a custom 3x3 factory) keys its weights by their path
    below it (``"conv3_block1_2_conv/offsets/kernel"``). The keys do not change
    when the network is rebuilt with other strides, dilations or 3x3 factories,
    nor when it is nested in a detector.
    """
    named = {}
    for layer in model.layers:
        leaves = layer.leaf_layers() if isinstance(layer, _ResNetLayer) else [layer]
        for leaf in leaves:
            marker = f"{leaf.name}/"
            for variable in leaf.weights:
                path = variable.path
                relative = path[path.rindex(marker) + len(marker):] if marker in path else variable.name
                key = f"{leaf.name}/{relative}"
                if key in named:
                    raise ValueError(f"Two weights of {model.name} share the key {key!r}.")
                named[key] = variable
    return named


@dataclasses.dataclass
class WeightCopyReport:
    """What a copy by name did: keys copied, folded biases, and what did not match."""

    copied: list = dataclasses.field(default_factory=list)
    folded: list = dataclasses.field(default_factory=list)  # conv biases folded into the next BN's moving mean
    missing: list = dataclasses.field(default_factory=list)  # target weights the source does not have
    unused: list = dataclasses.field(default_factory=list)  # source weights the target does not have
    mismatched: list = dataclasses.field(default_factory=list)  # (key, source shape, target shape)

    @property
    def complete(self):
        """True when every target weight was set."""
        return not self.missing and not self.mismatched


def _copy_values(values, target):
    report = WeightCopyReport()
    target_weights = named_weights(target)
    for key, variable in target_weights.items():
        if key not in values:
            report.missing.append(key)
        elif tuple(values[key].shape) != tuple(variable.shape):
            report.mismatched.append((key, tuple(values[key].shape), tuple(variable.shape)))
        else:
            variable.assign(values[key])
            report.copied.append(key)
    report.unused = [key for key in values if key not in target_weights]
    return report


def copy_weights(source, target):
    """Copies the weights of one built backbone into another by layer and weight name.

    Use it to move weights between rebuilds of the same ResNet with other
    strides, dilations, extra stages, 3x3 factories or frozen parts. Returns a
    :class:`WeightCopyReport`; nothing is copied into a weight whose shape
    differs (it is listed in ``mismatched``).
    """
    return _copy_values({k: np.asarray(v) for k, v in named_weights(source).items()}, target)


def load_keras_applications_weights(backbone, reference):
    """Copies a built ``keras.applications.ResNet50/101`` (``reference``) into ``backbone``.

    Layers copy by name. ``keras.applications`` convolutions have biases and
    ours do not: ``bn(conv(x) + b)`` equals ``bn'(conv(x))`` where ``bn'`` has
    moving mean ``mean - b``, so each bias is folded into the following batch
    norm's moving mean (``..._conv/bias`` into ``..._bn/moving_mean``). Works
    offline with any weights (``weights=None`` models in tests); the
    ``"imagenet"`` path of :func:`resnet` passes a downloaded model. Returns a
    :class:`WeightCopyReport` (``unused`` lists the reference's stages that
    ``backbone`` does not build).
    """
    values = {k: np.asarray(v) for k, v in named_weights(reference).items()}
    target_keys = set(named_weights(backbone))
    folded = []
    for key in list(values):
        if not key.endswith("_conv/bias") or key in target_keys:
            continue
        mean_key = key[: -len("_conv/bias")] + "_bn/moving_mean"
        if mean_key in values:
            values[mean_key] = values[mean_key] - values.pop(key)
            folded.append(key)
    report = _copy_values(values, backbone)
    report.folded = folded
    return report
