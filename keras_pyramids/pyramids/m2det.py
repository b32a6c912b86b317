"""M2Det's multi-level feature pyramid network (MLFPN): FFMv1, FFMv2, TUM, SFAM.

Zhao et al., "M2Det: A Single-Shot Object Detector based on Multi-Level
Feature Pyramid Network" (AAAI 2019), section "Multi-level Feature Pyramid
Network", Figures 2-4 and equations 1-3. Every convolution is conv + batch norm
+ ReLU as in the paper's Figure 4 (:class:`keras_pyramids.blocks.ConvBlock`).

What follows the paper and what follows the public reference code
(github.com/qijiezhao/M2Det) -- the defaults are the paper's:

=========================  ==============================  ==============================
item                       paper (default here)            reference code (option)
=========================  ==============================  ==============================
TUM output channels        ``tum_channels // 2`` (Fig. 4c  ``tum_channels``
                           "256,1x1,1,128")                (``tum_out_channels=C``)
FFMv2 1x1 conv             one per TUM (Fig. 2, 4b)        one conv shared by all TUMs
                                                           (``share_ffm2=True``)
SFAM                       on (Fig. 2, 3, Table 2)         off (``use_sfam=False``)
SE weights in SFAM         one SE block per scale          shared over scales
                                                           (``share_attention=True``)
last TUM encoder conv      3x3 stride 2 (text: "a series   3x3 stride 1, no padding
                           of 3x3 convolution layers with  (``last_encoder_stride=1``)
                           stride 2")
=========================  ==============================  ==============================

Not in the paper's text but implied by its parameter counts (Table 3, see
:func:`keras_pyramids.models.m2det.table3_report`): the decoder has a 3x3
conv on every encoder map before the element-wise sum (as the reference's
``latlayer``); without it every Table 3 row is 5-50% short.

Equation 1 writes the first TUM as ``T_1(X_base)``, but Fig. 4c gives a TUM a
``tum_channels``-wide input, so the first TUM here gets a 1x1 conv of the base
feature to ``tum_channels`` channels; the reference feeds it the
``tum_channels // 2``-channel FFMv2 conv output instead.
"""

import keras
import numpy as np
from keras import layers, ops

from keras_pyramids.blocks import ConvBlock

# Batch-norm epsilon 1e-5 as PyTorch's BatchNorm2d in the reference's BasicConv;
# the moving-average momentum is the zoo's ConvBlock default.
_BN = {"batch_norm_epsilon": 1e-5}


def _conv(filters, kernel_size, strides=1, padding="same", name=None):
    if padding == "same":
        return ConvBlock(filters, kernel_size, strides=strides, activation="relu", name=name, **_BN)
    return PaddedConvBlock(
        filters, kernel_size, strides=strides, padding=padding, activation="relu", name=name, **_BN
    )


@keras.saving.register_keras_serializable(package="keras_pyramids")
class PaddedConvBlock(ConvBlock):
    """:class:`ConvBlock` with a choice of ``padding`` (``"same"`` or ``"valid"``).

    Needed only for the reference TUM's last encoder conv (3x3, stride 1, no
    padding). The conv is reconfigured before it is built, so it has exactly
    the weights of a ``ConvBlock``.
    """

    def __init__(self, filters, kernel_size=1, padding="same", **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid'; got {padding!r}.")
        self.padding = padding
        self.conv.padding = padding

    def get_config(self):
        config = super().get_config()
        config["padding"] = self.padding
        return config


def nearest_resize(x, size):
    """Nearest-neighbour resize of ``[B, h, w, C]`` to ``[B, H, W, C]`` with static sizes.

    Output cell ``i`` copies input cell ``floor(i * h / H)`` -- PyTorch's
    ``F.interpolate(mode="nearest")`` that the reference TUM and FFMv1 use. For
    an exact factor (``H = k h``) this is ``k``-fold repetition. Written as
    two ``take``s with numpy indices so it is exact and backend independent.
    """
    h, w = int(x.shape[1]), int(x.shape[2])
    out_h, out_w = int(size[0]), int(size[1])
    if (h, w) == (out_h, out_w):
        return x
    rows = (np.arange(out_h) * h) // out_h
    cols = (np.arange(out_w) * w) // out_w
    x = ops.take(x, ops.convert_to_tensor(rows.astype("int32")), axis=1)
    return ops.take(x, ops.convert_to_tensor(cols.astype("int32")), axis=2)


def _spatial(shape):
    if shape[1] is None or shape[2] is None:
        raise ValueError(f"M2Det layers need static spatial sizes; got shape {tuple(shape)}.")
    return int(shape[1]), int(shape[2])


@keras.saving.register_keras_serializable(package="keras_pyramids")
class FFMv1(keras.layers.Layer):
    """Feature Fusion Module v1: the base feature from two backbone maps (Fig. 4a).

    ``shallow`` -> 3x3 conv to ``shallow_channels`` (paper: "512,3x3,1,256");
    ``deep`` -> 1x1 conv to ``deep_channels`` ("1024,1x1,1,512"), nearest
    upsampling to the shallow map's size; concatenation.

    Input: ``[shallow [B, H, W, C_s], deep [B, H / k, W / k, C_d]]`` with an
    integer ``k`` (2 for VGG conv4_3 / fc7). Output:
    ``[B, H, W, shallow_channels + deep_channels]`` (40x40x768 at 320x320).
    """

    def __init__(self, shallow_channels=256, deep_channels=512, **kwargs):
        super().__init__(**kwargs)
        self.shallow_channels = int(shallow_channels)
        self.deep_channels = int(deep_channels)
        self.reduce = _conv(self.shallow_channels, 3, name="reduce")
        self.up_reduce = _conv(self.deep_channels, 1, name="up_reduce")

    def build(self, input_shape):
        shallow_shape, deep_shape = input_shape
        (h, w), (dh, dw) = _spatial(shallow_shape), _spatial(deep_shape)
        if h % dh or w % dw or h // dh != w // dw:
            raise ValueError(
                f"FFMv1 upsamples the deep map by an integer factor to the shallow map's size; got "
                f"shallow {h}x{w} and deep {dh}x{dw}. For VGG/ResNet M2Det the image side must be a "
                "multiple of 16."
            )
        self.reduce.build(shallow_shape)
        self.up_reduce.build(deep_shape)

    def call(self, inputs, training=None):
        shallow, deep = inputs
        shallow = self.reduce(shallow, training=training)
        deep = nearest_resize(self.up_reduce(deep, training=training), _spatial(shallow.shape))
        return ops.concatenate([shallow, deep], axis=-1)

    def compute_output_shape(self, input_shape):
        shallow_shape = input_shape[0]
        return tuple(shallow_shape[:3]) + (self.shallow_channels + self.deep_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(shallow_channels=self.shallow_channels, deep_channels=self.deep_channels)
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class FFMv2(keras.layers.Layer):
    """Feature Fusion Module v2: base feature + the previous TUM's largest output (Fig. 4b).

    The base feature goes through a 1x1 conv to ``channels`` ("768,1x1,1,128")
    and is concatenated with the previous TUM's largest map (same size).

    Input: ``[base [B, H, W, C_b], previous [B, H, W, C_p]]``. Output:
    ``[B, H, W, channels + C_p]`` (256 channels in the paper's default).
    """

    def __init__(self, channels=128, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduce = _conv(self.channels, 1, name="reduce")

    def build(self, input_shape):
        base_shape, previous_shape = input_shape
        if _spatial(base_shape) != _spatial(previous_shape):
            raise ValueError(
                f"FFMv2 fuses maps of the same size; got base {_spatial(base_shape)} and previous "
                f"TUM output {_spatial(previous_shape)}."
            )
        self.reduce.build(base_shape)

    def call(self, inputs, training=None):
        base, previous = inputs
        return ops.concatenate([self.reduce(base, training=training), previous], axis=-1)

    def compute_output_shape(self, input_shape):
        base_shape, previous_shape = input_shape
        return tuple(base_shape[:3]) + (self.channels + previous_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config


def tum_scales(size, num_scales=6, last_encoder_stride=2):
    """Side lengths of a TUM's outputs for an input side ``size``, largest first.

    Stride-2 SAME convs give ``ceil(s / 2)``; the reference's last conv (3x3,
    stride 1, no padding) gives ``s - 2``. 40 -> (40, 20, 10, 5, 3, 2) in the
    paper's layout, (40, 20, 10, 5, 3, 1) in the reference's.
    """
    sizes = [int(size)]
    for i in range(num_scales - 1):
        last = i == num_scales - 2
        sizes.append(sizes[-1] - 2 if last and last_encoder_stride == 1 else -(-sizes[-1] // 2))
    return sizes


@keras.saving.register_keras_serializable(package="keras_pyramids")
class TUM(keras.layers.Layer):
    """Thinned U-shape Module (Fig. 4c).

    Encoder: ``num_scales - 1`` 3x3 stride-2 convs to ``channels``. Decoder,
    from the deepest map up: nearest upsampling to the next encoder map's size
    plus a ``lateral_kernel_size`` conv of that encoder map (element-wise
    sum). Each of the ``num_scales`` decoder maps then goes through a 1x1
    "smoothing" conv to ``out_channels`` (the paper's "1x1 convolution layers
    after upsample and element-wise sum"); these are the outputs.

    Args:
        channels: encoder/decoder width (Table 3's "Channels").
        out_channels: output width; ``None`` -> ``channels // 2`` (paper Fig. 4c).
        num_scales: outputs (6 in the paper).
        lateral_kernel_size: 3 (reference ``latlayer``, matches Table 3's
            counts), 1, or 0 for no lateral conv (plain sum).
        last_encoder_stride: 2 (paper) or 1 (reference: 3x3 VALID conv).

    Input: ``[B, H, W, C_in]``. Output: list of ``num_scales`` maps
    ``[B, s_i, s_i', out_channels]``, largest first, ``s`` from
    :func:`tum_scales` (320x320 M2Det: 40, 20, 10, 5, 3, 2).
    """

    def __init__(
        self,
        channels=256,
        out_channels=None,
        num_scales=6,
        lateral_kernel_size=3,
        last_encoder_stride=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_scales < 2:
            raise ValueError(f"A TUM needs num_scales >= 2; got {num_scales}.")
        if last_encoder_stride not in (1, 2):
            raise ValueError(f"last_encoder_stride must be 2 (paper) or 1 (reference); got {last_encoder_stride}.")
        if lateral_kernel_size not in (0, 1, 3):
            raise ValueError(f"lateral_kernel_size must be 0, 1 or 3; got {lateral_kernel_size}.")
        self.channels = int(channels)
        self.out_channels = int(out_channels) if out_channels else self.channels // 2
        self.num_scales = int(num_scales)
        self.lateral_kernel_size = int(lateral_kernel_size)
        self.last_encoder_stride = int(last_encoder_stride)
        self.encoder = []
        for i in range(self.num_scales - 1):
            if i == self.num_scales - 2 and self.last_encoder_stride == 1:
                self.encoder.append(_conv(self.channels, 3, 1, padding="valid", name=f"encoder_{i}"))
            else:
                self.encoder.append(_conv(self.channels, 3, 2, name=f"encoder_{i}"))
        # Lateral convs on encoder maps 0..num_scales-2 (the deepest map starts the decoder).
        self.lateral = (
            [_conv(self.channels, self.lateral_kernel_size, name=f"lateral_{i}") for i in range(self.num_scales - 1)]
            if self.lateral_kernel_size
            else []
        )
        self.smooth = [_conv(self.out_channels, 1, name=f"smooth_{i}") for i in range(self.num_scales)]

    def output_sizes(self, input_shape):
        h, w = _spatial(input_shape)
        return list(
            zip(
                tum_scales(h, self.num_scales, self.last_encoder_stride),
                tum_scales(w, self.num_scales, self.last_encoder_stride),
            )
        )

    def build(self, input_shape):
        sizes = self.output_sizes(input_shape)
        for (h, w), (nh, nw) in zip(sizes[:-1], sizes[1:]):
            if min(nh, nw) < 1 or (nh, nw) == (h, w):
                raise ValueError(
                    f"A {input_shape[1]}x{input_shape[2]} TUM input is too small for {self.num_scales} "
                    f"distinct scales (sizes would be {sizes}); use a larger image or fewer scales."
                )
        if self.lateral_kernel_size == 0 and input_shape[-1] != self.channels:
            raise ValueError(
                f"Without lateral convs the TUM input must have {self.channels} channels; got {input_shape[-1]}."
            )
        shape = tuple(input_shape)
        encoder_shapes = [shape]
        for conv in self.encoder:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            encoder_shapes.append(shape)
        for conv, s in zip(self.lateral, encoder_shapes[:-1]):
            conv.build(s)
        for conv, s in zip(self.smooth, encoder_shapes):
            conv.build(s[:3] + (self.channels,))

    def call(self, x, training=None):
        encoded = [x]
        for conv in self.encoder:
            encoded.append(conv(encoded[-1], training=training))
        decoded = [encoded[-1]]  # deepest first
        for i in range(self.num_scales - 2, -1, -1):
            lateral = self.lateral[i](encoded[i], training=training) if self.lateral else encoded[i]
            decoded.append(nearest_resize(decoded[-1], _spatial(lateral.shape)) + lateral)
        decoded = decoded[::-1]  # largest first
        return [conv(d, training=training) for conv, d in zip(self.smooth, decoded)]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], h, w, self.out_channels) for h, w in self.output_sizes(input_shape)]

    def get_config(self):
        config = super().get_config()
        config.update(
            channels=self.channels,
            out_channels=self.out_channels,
            num_scales=self.num_scales,
            lateral_kernel_size=self.lateral_kernel_size,
            last_encoder_stride=self.last_encoder_stride,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class SFAM(keras.layers.Layer):
    """Scale-wise Feature Aggregation Module (Fig. 3, equations 2 and 3).

    Stage 1: for each scale ``i``, ``X_i = Concat(x_i^1, ..., x_i^L)`` over the
    ``L`` TUM levels (channels level-major). Stage 2: SE attention (Hu et al.):
    ``z = GlobalAvgPool(X_i)``, ``s = sigmoid(W_2 relu(W_1 z))`` with
    ``W_1: C -> C / reduction`` and ``W_2: C / reduction -> C`` (dense layers
    with bias, as the reference's 1x1 convs), ``X~_i^c = s_c X_i^c``. The
    paper's equation 2 names ReLU ``sigma`` and sigmoid ``delta`` the other way
    round; the gate has to be the sigmoid (SE block), as here.

    Args:
        reduction: ``r`` of equation 2 (16 in the paper).
        share_attention: one SE block for all scales (the reference builds
            its list with ``[module] * num_scales``) instead of one per scale.
        use_attention: False -> only stage 1 (reference default ``sfam=False``).

    Input: list of ``L`` levels, each a list of ``S`` maps
    ``[B, h_i, w_i, c]`` (largest first). Output: list of ``S`` maps
    ``[B, h_i, w_i, L c]``.
    """

    def __init__(self, reduction=16, share_attention=False, use_attention=True, **kwargs):
        super().__init__(**kwargs)
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1; got {reduction}.")
        self.reduction = int(reduction)
        self.share_attention = bool(share_attention)
        self.use_attention = bool(use_attention)
        self.squeeze = []
        self.excite = []

    def build(self, input_shape):
        num_scales = len(input_shape[0])
        for level in input_shape:
            if len(level) != num_scales:
                raise ValueError(f"Every SFAM level needs {num_scales} scales; got {len(level)}.")
        channels = [sum(int(level[i][-1]) for level in input_shape) for i in range(num_scales)]
        for i in range(num_scales):
            sizes = {_spatial(level[i]) for level in input_shape}
            if len(sizes) != 1:
                raise ValueError(f"SFAM scale {i} has maps of different sizes across levels: {sorted(sizes)}.")
        if not self.use_attention:
            return
        blocks = 1 if self.share_attention else num_scales
        if self.share_attention and len(set(channels)) != 1:
            raise ValueError(f"Shared attention needs the same channels on every scale; got {channels}.")
        for i in range(blocks):
            c = channels[i]
            squeeze = layers.Dense(max(c // self.reduction, 1), activation="relu", name=f"squeeze_{i}")
            excite = layers.Dense(c, activation="sigmoid", name=f"excite_{i}")
            squeeze.build((None, c))
            excite.build((None, max(c // self.reduction, 1)))
            self.squeeze.append(squeeze)
            self.excite.append(excite)

    def gates(self, x, scale):
        """``s`` of equation 2 for a concatenated map of scale ``scale``: ``[B, C]``."""
        block = 0 if self.share_attention else scale
        z = ops.mean(x, axis=(1, 2))
        return self.excite[block](self.squeeze[block](z))

    def call(self, levels):
        num_scales = len(levels[0])
        outputs = []
        for i in range(num_scales):
            x = ops.concatenate([level[i] for level in levels], axis=-1)
            if self.use_attention:
                x = x * self.gates(x, i)[:, None, None, :]
            outputs.append(x)
        return outputs

    def compute_output_shape(self, input_shape):
        return [
            tuple(input_shape[0][i][:3]) + (sum(int(level[i][-1]) for level in input_shape),)
            for i in range(len(input_shape[0]))
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            share_attention=self.share_attention,
            use_attention=self.use_attention,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class MLFPN(keras.layers.Layer):
    """Multi-Level Feature Pyramid Network (Fig. 2, equation 1).

    ``X_base = FFMv1(shallow, deep)``; TUM 1 takes a 1x1 conv of ``X_base`` to
    ``tum_channels``; TUM ``l > 1`` takes ``FFMv2(X_base, x_1^{l-1})`` (the
    previous TUM's largest output); SFAM gathers the ``num_levels x
    num_scales`` outputs into ``num_scales`` maps. See the module docstring for
    the paper / reference options.

    Args:
        shallow_level, deep_level: backbone maps (level keys) fused by FFMv1
            (``"C3"``, ``"C4"``: VGG's conv4_3 and fc7, ResNet's conv3_x and conv4_x).
        num_levels: TUMs ``L`` (8 in the paper).
        num_scales: outputs per TUM (6).
        tum_channels: TUM width (256; Table 3's "Channels").
        tum_out_channels: TUM output width (None -> ``tum_channels // 2``).
        ffm2_channels: width of FFMv2's base-feature conv (None ->
            ``tum_channels // 2``: "768,1x1,1,128" for 256-channel TUMs).
        base_channels: FFMv1's (shallow, deep) conv widths, (256, 512).
        use_sfam, sfam_reduction, share_attention: SFAM settings.
        share_ffm2: one FFMv2 conv for all TUMs (reference).
        last_encoder_stride, lateral_kernel_size: TUM settings.

    Input: dict of backbone maps with ``shallow_level [B, H, W, C_s]`` and ``deep_level``
    (``H / k`` with integer ``k``). Output: list of ``num_scales`` maps
    ``[B, s_i, s_i, num_levels * out]``, largest first (``s`` from
    :func:`tum_scales` of ``H``).
    """

    def __init__(
        self,
        shallow_level="C3",
        deep_level="C4",
        num_levels=8,
        num_scales=6,
        tum_channels=256,
        tum_out_channels=None,
        ffm2_channels=None,
        base_channels=(256, 512),
        use_sfam=True,
        sfam_reduction=16,
        share_attention=False,
        share_ffm2=False,
        last_encoder_stride=2,
        lateral_kernel_size=3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_levels < 1:
            raise ValueError(f"num_levels (TUMs) must be >= 1; got {num_levels}.")
        if tum_channels < 2:
            raise ValueError(f"tum_channels must be >= 2; got {tum_channels}.")
        self.shallow_level = shallow_level
        self.deep_level = deep_level
        self.num_levels = int(num_levels)
        self.num_scales = int(num_scales)
        self.tum_channels = int(tum_channels)
        self.tum_out_channels = int(tum_out_channels) if tum_out_channels else self.tum_channels // 2
        self.base_channels = tuple(int(c) for c in base_channels)
        self.use_sfam = bool(use_sfam)
        self.sfam_reduction = int(sfam_reduction)
        self.share_attention = bool(share_attention)
        self.share_ffm2 = bool(share_ffm2)
        self.last_encoder_stride = int(last_encoder_stride)
        self.lateral_kernel_size = int(lateral_kernel_size)

        self.ffm1 = FFMv1(*self.base_channels, name="ffm1")
        self.first_reduce = _conv(self.tum_channels, 1, name="tum_1_input")
        # Fig. 4b: the base feature's 1x1 conv gives half the TUM width; with the
        # paper's half-width TUM outputs a TUM input is then tum_channels wide
        # (Fig. 4c), with the reference's full-width outputs 1.5 x tum_channels.
        self.ffm2_channels = int(ffm2_channels) if ffm2_channels else max(self.tum_channels // 2, 1)
        if self.share_ffm2:
            shared = FFMv2(self.ffm2_channels, name="ffm2")
            self.ffm2 = [shared] * (self.num_levels - 1)
        else:
            self.ffm2 = [FFMv2(self.ffm2_channels, name=f"ffm2_{l + 2}") for l in range(self.num_levels - 1)]
        self.tums = [
            TUM(
                self.tum_channels,
                self.tum_out_channels,
                num_scales=self.num_scales,
                lateral_kernel_size=self.lateral_kernel_size,
                last_encoder_stride=self.last_encoder_stride,
                name=f"tum_{l + 1}",
            )
            for l in range(self.num_levels)
        ]
        self.sfam = SFAM(
            self.sfam_reduction,
            share_attention=self.share_attention,
            use_attention=self.use_sfam,
            name="sfam",
        )

    def _endpoints(self, endpoints):
        missing = [k for k in (self.shallow_level, self.deep_level) if k not in endpoints]
        if missing:
            raise ValueError(f"MLFPN needs backbone maps {missing}; got {sorted(endpoints)}.")
        return endpoints[self.shallow_level], endpoints[self.deep_level]

    def build(self, input_shape):
        shallow_shape, deep_shape = self._endpoints(input_shape)
        self.ffm1.build([shallow_shape, deep_shape])
        base_shape = self.ffm1.compute_output_shape([shallow_shape, deep_shape])
        self.first_reduce.build(base_shape)
        tum_input = self.first_reduce.compute_output_shape(base_shape)
        levels = []
        for l, tum in enumerate(self.tums):
            if l > 0:
                pair = [base_shape, levels[-1][0]]
                if not self.ffm2[l - 1].built:  # a shared FFMv2 is built once
                    self.ffm2[l - 1].build(pair)
                tum_input = self.ffm2[l - 1].compute_output_shape(pair)
            tum.build(tum_input)
            levels.append(tum.compute_output_shape(tum_input))
        self.sfam.build(levels)

    def call(self, endpoints, training=None):
        shallow, deep = self._endpoints(endpoints)
        base = self.ffm1([shallow, deep], training=training)
        levels = [self.tums[0](self.first_reduce(base, training=training), training=training)]
        for ffm2, tum in zip(self.ffm2, self.tums[1:]):
            levels.append(tum(ffm2([base, levels[-1][0]], training=training), training=training))
        return self.sfam(levels)

    def get_config(self):
        config = super().get_config()
        config.update(
            shallow_level=self.shallow_level,
            deep_level=self.deep_level,
            num_levels=self.num_levels,
            num_scales=self.num_scales,
            tum_channels=self.tum_channels,
            tum_out_channels=self.tum_out_channels,
            ffm2_channels=self.ffm2_channels,
            base_channels=self.base_channels,
            use_sfam=self.use_sfam,
            sfam_reduction=self.sfam_reduction,
            share_attention=self.share_attention,
            share_ffm2=self.share_ffm2,
            last_encoder_stride=self.last_encoder_stride,
            lateral_kernel_size=self.lateral_kernel_size,
        )
        return config
