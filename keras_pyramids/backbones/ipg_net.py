"""IPG-Net: image pyramid guidance fused into the ResNet stream.

Liu et al., "IPG-Net: Image Pyramid Guidance Network for Small Object
Detection" (CVPR workshops 2020). Three parts, named as in the paper:

- :class:`ImagePyramid` (section 3.3, 4.1 "Training"): ``I_0`` is the input,
  ``I_i`` the input down-sampled by ``2^i`` with linear interpolation, ``N = 4``
  levels;
- :class:`IPGTransformationModule` (section 3.3, Figure 2): one per level with
  its own weights, a 7x7 convolution and a 2x2 max pooling, then a residual
  block whose output has the channels of the backbone stage it meets;
- :class:`IPGFusionModule` (section 3.5, Eq. 1-4): ``sum``, ``product`` or
  ``concat`` of the transformed pyramid feature ``F_i`` and the stage output
  ``R_i``; the fused ``O_i`` replaces ``R_i`` in the backbone stream (the next
  stage reads it) and in the maps given to the neck (Figure 1).

:func:`ipg_net` builds the backbone (section 3.4): ResNet-50/101 with fusion at
a chosen set of stages (Table 4: any single stage 1-4, or stages 2-4), extra
stages of two bottleneck blocks (Table 3: 4, 5, 6 stages) and the "7 (keep)"
variant whose last three stages keep their spatial size. It follows the
backbone contract of :mod:`keras_pyramids.backbones` (maps keyed ``C<k>`` =
stride ``2^k``; a stage that keeps its stride adds a letter). With
``fusion_stages=()`` it is the plain-ResNet twin (same stages, same keys).

There is no public implementation of IPG-Net. What the paper leaves open and
what is chosen here:

=====================================  ===================================================================
item                                   choice (and why)
=====================================  ===================================================================
stage numbering                        "stage 1 .. stage 4" (section 3.4, Table 4) are ResNet's
                                       ``conv2_x`` .. ``conv5_x`` (keys ``C2`` .. ``C5``); extra stages are
                                       stages 5, 6, 7.
which image meets which stage          level ``i`` (image ``I_i``, stride ``2^i``) meets stage ``i + 1``
                                       (stride ``2^(i+2)``): Fig. 2 gives level ``i`` ``C1 x 2^i`` channels,
                                       C1 = 256, which are stage ``i + 1``'s (256, 512, 1024, 2048); the
                                       7x7 convolution (stride 2) and the 2x2 max pooling (stride 2) of
                                       the module divide by 4, so ``F_i`` has exactly ``R_{i+1}``'s size,
                                       ``ceil(H / 2^(i+2))``, for any input size (the ResNet stem and
                                       stride-2 stages round up the same way). Eq. 1's ``i in [1, N-1]``
                                       with N = 4 is then stages 2-4 (Table 4's last row, the default);
                                       fusing stage 1 (Table 4) uses level 0, the input itself.
pyramid down-sampling                  each level is the one above it bilinearly resized to
                                       ``ceil(h / 2) x ceil(w / 2)`` (half-pixel centres, no antialias,
                                       as PyTorch's ``interpolate(mode="bilinear")``): "down-sampling
                                       (linear interpolate) ... into four levels with a factor of 2".
                                       For even sides this is the 2x2 mean of the level above, so
                                       ``I_i`` is the ``2^i x 2^i`` block mean of the input. The pyramid
                                       is made from the preprocessed image (Caffe BGR minus the mean;
                                       the same result, resizing is linear per channel).
7x7 convolution                        stride 2, 3 pixels of zero padding (as ResNet's ``conv1``), 64
                                       filters (ResNet's stem width; the paper gives none), batch norm,
                                       ReLU; max pooling 2x2 stride 2, SAME (rounds up).
residual block                         "accepts features of the same dimensions but outputs features of
                                       different dimensions": a bottleneck whose 1x1 and 3x3 keep the
                                       module's 64 channels and whose last 1x1 and projection shortcut
                                       give the stage's channels (batch norm after each convolution,
                                       ReLU after the sum). The paper calls the module "shallow and
                                       light-weighted"; ResNet's 4x bottleneck ratio instead would put
                                       ~3.5M parameters in level 3 alone.
CT (channel transform)                 ``channel_transform="linear"`` is the paper's "channel-dimension
                                       linear interpolate", done literally: at each pixel the channel
                                       vector is resampled to the stage's width by 1-D linear
                                       interpolation (half-pixel centres, PyTorch's
                                       ``interpolate(mode="linear", align_corners=False)``), a fixed
                                       matrix. It is the default, and with the default
                                       ``transform_channels`` (the stage's channels, Fig. 2) it is the
                                       identity: the module already outputs the stage's width, so
                                       nothing needs aligning and ``W_s`` does the learned projection.
                                       ``transform_channels=64`` makes the module end at 64 channels
                                       and CT interpolate them up; ``"none"`` requires equal widths.
W, W_s, W_m                            "different linear transformations": 1x1 linear maps with a bias
                                       (``Dense`` on the channel axis), each ``C_stage -> C_stage``
                                       (``W`` of ``concat`` maps ``2 C_stage -> C_stage``).
initialisation                         the fused map starts as the stage's own (``O_i = R_i`` for ``sum``,
                                       ``LN(R_i)`` for ``product``): ``W_m`` and ``W`` start as the
                                       identity (``concat``'s ``W`` as ``[0; I]``), ``W_s`` as zero
                                       (``concat``: identity, so its gradient is not zero). ImageNet
                                       weights of the ResNet are then unchanged at the start of
                                       fine-tuning and the guidance grows from zero (as zero-init
                                       residual branches do); from scratch it trains the same.
layer norm (product)                   over the channels at each position (Keras ``LayerNormalization``,
                                       axis -1, epsilon 1e-5 as PyTorch), so it works at any input size.
default fusion                         ``sum``: section 4.2.1 / Table 2 finds it best ("we perform the
                                       rest experiments with a sum fusion module").
extra stages                           two bottleneck blocks of width 512 (2048 channels out), stride 2
                                       (:data:`~keras_pyramids.backbones.resnet.IPG_EXTRA_STAGE`);
                                       ``keep=True`` ("7 (keep)", as DetNet): every extra stage stride 1
                                       with dilation 2, keys ``C5b``, ``C5c``, ``C5d``.
fusion at extra stages                 not offered: the pyramid has N = 4 levels for the four ResNet
                                       stages (section 3.3) and Table 4 only fuses stages 1-4.
=====================================  ===================================================================

Which stage outputs feed the neck is the detector's choice
(:mod:`keras_pyramids.models.ipg`).
"""

import math

import keras
import numpy as np
from keras import layers, ops

from keras_pyramids.backbones import level_keys
from keras_pyramids.backbones.resnet import (IPG_EXTRA_STAGE, STEM_STRIDE, _check_positive_int, _ResNetLayer,
                                             _scaled, resnet)

FUSIONS = ("sum", "product", "concat")
CHANNEL_TRANSFORMS = ("linear", "none")
# Fig. 2 / Table 4: the transformation and fusion modules exist for the four ResNet stages.
FUSABLE_STAGES = (1, 2, 3, 4)
# Eq. 1: i in [1, N - 1] with N = 4, i.e. stages 2-4 (Table 4's last row).
DEFAULT_FUSION_STAGES = (2, 3, 4)
# Width of the 7x7 convolution and of the residual block's inner convolutions (ResNet's stem width).
TRANSFORM_FILTERS = 64
LAYER_NORM_EPSILON = 1e-5


def _halved(size):
    return None if size is None else -(-int(size) // 2)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ImagePyramid(keras.layers.Layer):
    """The image pyramid of section 3.3 / 4.1: ``[I_0, I_1, ..., I_{N-1}]``.

    ``I_0`` is the input; ``I_i`` is ``I_{i-1}`` bilinearly resized to half its
    size, rounded up (half-pixel centres, no antialias), so for even sides it is
    the 2x2 mean of ``I_{i-1}``. Input ``[B, H, W, C]`` with static ``H``, ``W``;
    output a list of ``num_levels`` maps ``[B, ceil(H / 2^i), ceil(W / 2^i), C]``.
    """

    def __init__(self, num_levels=4, **kwargs):
        super().__init__(**kwargs)
        self.num_levels = _check_positive_int(num_levels, "ImagePyramid num_levels")

    def _sizes(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        sizes = [(height, width)]
        for _ in range(1, self.num_levels):
            sizes.append((_halved(sizes[-1][0]), _halved(sizes[-1][1])))
        return sizes

    def call(self, images):
        if images.shape[1] is None or images.shape[2] is None:
            raise ValueError(f"{self.name}: the image pyramid needs a static image size; got {images.shape}.")
        levels = [images]
        for size in self._sizes(images.shape)[1:]:
            levels.append(ops.image.resize(levels[-1], size, interpolation="bilinear", antialias=False))
        return levels

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], h, w, input_shape[3]) for h, w in self._sizes(input_shape)]

    def get_config(self):
        config = super().get_config()
        config.update(num_levels=self.num_levels)
        return config


def channel_interpolation_matrix(in_channels, out_channels):
    """The ``[in_channels, out_channels]`` matrix of 1-D linear interpolation along channels.

    Half-pixel centres as PyTorch's ``interpolate(mode="linear",
    align_corners=False)``: output channel ``j`` samples the input at
    ``max((j + 0.5) * in / out - 0.5, 0)``, clamped to the last channel. With
    ``in_channels == out_channels`` it is the identity.
    """
    matrix = np.zeros((in_channels, out_channels), np.float32)
    scale = in_channels / out_channels
    for j in range(out_channels):
        source = max((j + 0.5) * scale - 0.5, 0.0)
        low = min(int(math.floor(source)), in_channels - 1)
        high = min(low + 1, in_channels - 1)
        fraction = source - low
        matrix[low, j] += 1.0 - fraction
        matrix[high, j] += fraction
    return matrix


@keras.saving.register_keras_serializable(package="keras_pyramids")
class IPGTransformationModule(_ResNetLayer):
    """The IPG transformation module of one pyramid level (section 3.3, Figure 2): ``F_i = f_i(I_i)``.

    ``pad 3 -> 7x7/2 conv (filters) -> BN -> ReLU -> 2x2/2 max pool (SAME)``, then
    a residual block: ``1x1 (filters) -> BN -> ReLU -> 3x3 (filters) -> BN ->
    ReLU -> 1x1 (channels) -> BN``, plus a 1x1 projection shortcut to
    ``channels`` with BN, and a ReLU after the sum. Convolutions are bias-free
    (batch norm follows each), as ResNet's. See the module docstring for the
    choices the paper leaves open.

    Input ``[B, h, w, 3]`` (a pyramid image) -> output
    ``[B, ceil(h / 4), ceil(w / 4), channels]``.
    """

    def __init__(self, channels, filters=TRANSFORM_FILTERS, **kwargs):
        super().__init__(**kwargs)
        self.channels = _check_positive_int(channels, "IPG transformation channels")
        self.filters = _check_positive_int(filters, "IPG transformation filters")
        prefix = self.name

        def conv(filters, kernel_size, suffix, strides=1, padding="same"):
            return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                                 name=f"{prefix}_{suffix}_conv")

        self.pad = layers.ZeroPadding2D(3, name=f"{prefix}_pad")
        self.conv7x7 = conv(self.filters, 7, "7x7", strides=2, padding="valid")
        self.bn7x7 = self._norm(f"{prefix}_7x7_bn")
        self.pool = layers.MaxPooling2D(2, strides=2, padding="same", name=f"{prefix}_pool")
        self.conv1 = conv(self.filters, 1, "1")
        self.bn1 = self._norm(f"{prefix}_1_bn")
        self.conv2 = conv(self.filters, 3, "2")
        self.bn2 = self._norm(f"{prefix}_2_bn")
        self.conv3 = conv(self.channels, 1, "3")
        self.bn3 = self._norm(f"{prefix}_3_bn")
        self.shortcut_conv = conv(self.channels, 1, "0")
        self.shortcut_bn = self._norm(f"{prefix}_0_bn")

    def build(self, input_shape):
        shape = self.pad.compute_output_shape(input_shape)
        self.conv7x7.build(shape)
        shape = self.conv7x7.compute_output_shape(shape)
        self.bn7x7.build(shape)
        shape = self.pool.compute_output_shape(shape)
        pooled = shape
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3),
                         (self.shortcut_conv, self.shortcut_bn)):
            source = pooled if conv is self.shortcut_conv else shape
            conv.build(source)
            out = conv.compute_output_shape(source)
            bn.build(out)
            if conv is not self.shortcut_conv:
                shape = out

    def call(self, image, training=None):
        x = ops.relu(self.bn7x7(self.conv7x7(self.pad(image)), training=training))
        x = self.pool(x)
        shortcut = self.shortcut_bn(self.shortcut_conv(x), training=training)
        y = ops.relu(self.bn1(self.conv1(x), training=training))
        y = ops.relu(self.bn2(self.conv2(y), training=training))
        y = self.bn3(self.conv3(y), training=training)
        return ops.relu(y + shortcut)

    def compute_output_shape(self, input_shape):
        shape = self.pool.compute_output_shape(
            self.conv7x7.compute_output_shape(self.pad.compute_output_shape(input_shape)))
        return tuple(shape[:-1]) + (self.channels,)

    def leaf_layers(self):
        return [self.conv7x7, self.bn7x7, self.shortcut_conv, self.shortcut_bn,
                self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3]

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, filters=self.filters)
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class IPGFusionModule(_ResNetLayer):
    """The IPG fusion module (section 3.5, Eq. 1-4): ``O_i = beta(F_i, R_i)``.

    ``fusion`` chooses ``beta`` (Figure 3):

    - ``"sum"`` (Eq. 2): ``O = W . (W_s . CT(F) + W_m . R)``;
    - ``"product"`` (Eq. 3, "residual product"):
      ``O = LN((W_s . CT(F)) * (W_m . R) + R)``, ``*`` element-wise, LN a
      layer norm over the channels;
    - ``"concat"`` (Eq. 4): ``O = W . Cat(W_s . CT(F), W_m . R)``.

    ``W``, ``W_s``, ``W_m`` are 1x1 linear maps with a bias on the channel
    axis; CT is the channel transform (``"linear"``: channel-dimension linear
    interpolation to R's width, :func:`channel_interpolation_matrix`, the
    identity when the widths agree; ``"none"``: widths must agree). At
    initialisation ``O = R`` (``sum``, ``concat``) or ``LN(R)`` (``product``);
    see the module docstring.

    Inputs ``[F, R]``: ``F [B, h, w, c_F]`` from the transformation module and
    ``R [B, h, w, C]`` from the backbone stage. Output ``[B, h, w, C]``.
    """

    def __init__(self, fusion="sum", channel_transform="linear", layer_norm_epsilon=LAYER_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS:
            raise ValueError(f"Unknown IPG fusion {fusion!r}; known: {', '.join(FUSIONS)} (section 3.5).")
        if channel_transform not in CHANNEL_TRANSFORMS:
            raise ValueError(
                f"Unknown channel_transform {channel_transform!r}; known: {', '.join(CHANNEL_TRANSFORMS)}.")
        self.fusion = fusion
        self.channel_transform = channel_transform
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self._ct = None

    def build(self, input_shape):
        f_shape, r_shape = (tuple(s) for s in input_shape)
        if f_shape[1:3] != r_shape[1:3]:
            raise ValueError(
                f"{self.name}: the pyramid feature F {f_shape[1:3]} and the stage output R {r_shape[1:3]} "
                "must have the same height and width.")
        c_f, c_r = int(f_shape[-1]), int(r_shape[-1])
        if c_f != c_r:
            if self.channel_transform == "none":
                raise ValueError(
                    f"{self.name}: F has {c_f} channels and R {c_r}; channel_transform='none' needs equal "
                    "widths (use 'linear', the paper's channel interpolation).")
            self._ct = channel_interpolation_matrix(c_f, c_r)
        prefix = self.name
        self.w_s = layers.Dense(c_r, name=f"{prefix}_w_s")
        self.w_m = layers.Dense(c_r, name=f"{prefix}_w_m")
        self.w_s.build(f_shape[:-1] + (c_r,))
        self.w_m.build(r_shape)
        eye = np.eye(c_r, dtype=np.float32)
        zeros = np.zeros((c_r, c_r), np.float32)
        self.w_m.kernel.assign(eye)
        self.w_s.kernel.assign(eye if self.fusion == "concat" else zeros)
        if self.fusion == "product":
            self.w = None
            self.norm = layers.LayerNormalization(axis=-1, epsilon=self.layer_norm_epsilon, name=f"{prefix}_ln")
            self.norm.build(r_shape)
        else:
            self.norm = None
            self.w = layers.Dense(c_r, name=f"{prefix}_w")
            width = 2 * c_r if self.fusion == "concat" else c_r
            self.w.build(r_shape[:-1] + (width,))
            self.w.kernel.assign(np.concatenate([zeros, eye]) if self.fusion == "concat" else eye)

    def call(self, inputs):
        features, stage = inputs
        if self._ct is not None:
            features = ops.matmul(features, ops.convert_to_tensor(self._ct, dtype=features.dtype))
        guided = self.w_s(features)
        own = self.w_m(stage)
        if self.fusion == "sum":
            return self.w(guided + own)
        if self.fusion == "product":
            return self.norm(guided * own + stage)
        return self.w(ops.concatenate([guided, own], axis=-1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def leaf_layers(self):
        return [layer for layer in (self.w_s, self.w_m, self.w, self.norm) if layer is not None]

    def get_config(self):
        config = super().get_config()
        config.update(fusion=self.fusion, channel_transform=self.channel_transform,
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config


def _fusion_stages(fusion_stages):
    if isinstance(fusion_stages, (int, np.integer)) and not isinstance(fusion_stages, bool):
        fusion_stages = (fusion_stages,)
    if isinstance(fusion_stages, str) or not isinstance(fusion_stages, (tuple, list)):
        raise ValueError(f"fusion_stages must be a sequence of stages among {FUSABLE_STAGES}; got {fusion_stages!r}.")
    stages = tuple(sorted(set(int(s) for s in fusion_stages if not isinstance(s, bool))))
    bad = [s for s in fusion_stages if isinstance(s, bool) or s not in FUSABLE_STAGES]
    if bad or len(stages) != len(fusion_stages):
        raise ValueError(
            f"fusion_stages must be distinct stages among {FUSABLE_STAGES} (the four ResNet stages the N = 4 "
            f"image pyramid meets, Table 4); got {fusion_stages!r}.")
    return stages


def ipg_extra_stages(num_stages, keep=False):
    """Specs of the stages after ``conv5`` for a ``num_stages``-stage IPG-Net (section 3.4, Table 3).

    Each is two bottleneck blocks (:data:`IPG_EXTRA_STAGE`); stride 2, or with
    ``keep`` stride 1 and dilation 2 (the "7 (keep)" row, DetNet-style).
    """
    if isinstance(num_stages, bool) or not isinstance(num_stages, (int, np.integer)) or num_stages < 4:
        raise ValueError(f"num_stages must be an int >= 4 (the four ResNet stages plus extra ones); got {num_stages!r}.")
    if keep and num_stages == 4:
        raise ValueError("keep=True keeps the spatial size of the extra stages; num_stages=4 has none (Table 3 "
                         "uses keep with 7 stages).")
    spec = dict(IPG_EXTRA_STAGE, stride=1, dilation=2) if keep else dict(IPG_EXTRA_STAGE)
    return [dict(spec) for _ in range(int(num_stages) - 4)]


def ipg_stage_keys(num_stages=4, keep=False):
    """Keys of the stage outputs of a ``num_stages``-stage IPG-Net, stage 1 first
    (``("C2", ..., "C6")`` for 5 stages; ``(..., "C5", "C5b", "C5c", "C5d")`` for 7 (keep))."""
    strides = [STEM_STRIDE]
    for stride in (1, 2, 2, 2) + tuple(spec["stride"] for spec in ipg_extra_stages(num_stages, keep)):
        strides.append(strides[-1] * stride)
    return level_keys(strides[1:])


def ipg_net(
    depth=50,
    input_shape=(224, 224, 3),
    outputs=("C3", "C4", "C5"),
    fusion_stages=DEFAULT_FUSION_STAGES,
    fusion="sum",
    num_stages=4,
    keep=False,
    channel_transform="linear",
    transform_filters=TRANSFORM_FILTERS,
    transform_channels=None,
    width=1.0,
    weights=None,
    name=None,
    **resnet_kwargs,
):
    """Builds the IPG-Net backbone returning ``{key: [B, h, w, c]}`` for the ``outputs`` keys.

    Args:
        depth: 50 or 101 (the ResNet it is made from).
        input_shape: ``(H, W, 3)`` with fixed ``H``, ``W``; float RGB in ``[0, 255]``.
        outputs: keys of the stage outputs to return (``"C2"`` .. ``"C5"`` for
            stages 1-4, ``"C6"`` ... for extra stages; ``"C5b"`` ... with ``keep``).
        fusion_stages: stages (1-4) whose output is fused with the pyramid
            (Table 4: one stage, or ``(2, 3, 4)``, the default, Eq. 1); ``()``
            gives the plain-ResNet twin.
        fusion: ``"sum"`` (default, Table 2's best), ``"product"`` or ``"concat"``.
        num_stages: 4 (ResNet), 5, 6 or 7 (Table 3); extra stages of two
            bottleneck blocks.
        keep: the extra stages keep the spatial size (Table 3 "7 (keep)").
        channel_transform: CT of the fusion module, ``"linear"`` (the paper's
            channel interpolation; the identity at equal widths) or ``"none"``.
        transform_filters: width of the transformation module's 7x7 and inner
            convolutions (64, scaled by ``width``).
        transform_channels: output width of the transformation modules;
            ``None`` (Fig. 2) is the stage's width, an int makes CT interpolate.
        width: channel multiplier of the ResNet and the modules (1.0 is the
            paper's; small values make test-sized models).
        weights: as :func:`~keras_pyramids.backbones.resnet.resnet` (ImageNet
            weights cover the four ResNet stages; the modules start so that
            the fused map equals the stage's own, see the module docstring).
        name: model name, default ``ipg_resnet{depth}``.
        **resnet_kwargs: ``stride_in_1x1``, ``freeze_at``, ``frozen_batch_norm``,
            ``batch_norm_epsilon``, ``batch_norm_momentum``, ``conv3x3`` of
            :func:`resnet` (``conv3x3`` may name the four ResNet stages only;
            extra stages then use the plain convolution).

    Returns:
        A functional ``keras.Model`` mapping ``[B, H, W, 3]`` to a dict.
    """
    stages = _fusion_stages(fusion_stages)
    extras = ipg_extra_stages(num_stages, keep)
    if fusion not in FUSIONS:
        raise ValueError(f"Unknown IPG fusion {fusion!r}; known: {', '.join(FUSIONS)} (section 3.5).")
    if channel_transform not in CHANNEL_TRANSFORMS:
        raise ValueError(f"Unknown channel_transform {channel_transform!r}; known: {', '.join(CHANNEL_TRANSFORMS)}.")
    conv3x3 = resnet_kwargs.get("conv3x3")
    if isinstance(conv3x3, (tuple, list)) and len(conv3x3) == 4 and extras:
        # One 3x3 per ResNet stage (as POD's option gives): the extra stages get the plain one.
        resnet_kwargs["conv3x3"] = tuple(conv3x3) + ("conv",) * len(extras)
    for key in ("strides", "dilations", "extra_stages"):
        if key in resnet_kwargs:
            raise ValueError(f"ipg_net sets {key} itself (num_stages and keep choose the stages); got {key}=.")
    if input_shape is None or None in tuple(input_shape)[:2]:
        raise ValueError(f"IPG-Net needs a fixed image size for its image pyramid; got input_shape {input_shape}.")
    if transform_channels is not None:
        transform_channels = _check_positive_int(transform_channels, "transform_channels")
    filters = _scaled(_check_positive_int(transform_filters, "transform_filters"), width)
    norm = {k: resnet_kwargs[k] for k in ("batch_norm_epsilon", "batch_norm_momentum", "frozen_batch_norm")
            if k in resnet_kwargs}
    state = {}

    def guide(stage, preprocessed, x):
        if stage not in stages:
            return x
        if "pyramid" not in state:
            state["pyramid"] = ImagePyramid(max(stages), name="image_pyramid")(preprocessed)
        image = state["pyramid"][stage - 1]  # level i = stage - 1 (see the module docstring)
        transform = IPGTransformationModule(transform_channels or int(x.shape[-1]), filters,
                                            name=f"ipg_transform_stage{stage}", **norm)
        features = transform(image)
        if tuple(features.shape[1:3]) != tuple(x.shape[1:3]):
            raise ValueError(
                f"IPG-Net stage {stage}: the pyramid feature is {tuple(features.shape[1:3])} but the stage output "
                f"is {tuple(x.shape[1:3])}.")
        fuse = IPGFusionModule(fusion, channel_transform, name=f"ipg_fusion_stage{stage}", **norm)
        return fuse([features, x])

    model = resnet(depth, input_shape, outputs, extra_stages=extras, width=width, weights=weights,
                   name=name or f"ipg_resnet{depth}", after_stage=guide, **resnet_kwargs)
    # Read by the model report (the plain twin is the same call with fusion_stages=()).
    model.ipg_settings = dict(depth=depth, input_shape=tuple(input_shape), outputs=tuple(outputs),
                              fusion_stages=stages, fusion=fusion, num_stages=num_stages, keep=keep,
                              channel_transform=channel_transform, transform_filters=transform_filters,
                              transform_channels=transform_channels, width=width, **resnet_kwargs)
    return model


def ipg_resnet50(input_shape=(224, 224, 3), outputs=("C3", "C4", "C5"), **kwargs):
    """IPG-Net on ResNet-50; arguments as :func:`ipg_net`."""
    return ipg_net(50, input_shape, outputs, **kwargs)


def ipg_resnet101(input_shape=(224, 224, 3), outputs=("C3", "C4", "C5"), **kwargs):
    """IPG-Net on ResNet-101; arguments as :func:`ipg_net`."""
    return ipg_net(101, input_shape, outputs, **kwargs)


def is_guidance_layer(layer):
    """True for the layers IPG-Net adds to the ResNet (pyramid, transformation and fusion modules)."""
    return isinstance(layer, (ImagePyramid, IPGTransformationModule, IPGFusionModule))
