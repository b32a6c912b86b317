"""The global scale learner (GSL) convolution of POD (Peng et al., "POD: Practical Object Detection with
Scale-Sensitive Network", ICCV 2019, section 3.1 and Fig. 2).

:class:`GlobalScaleConv2D` predicts one scale pair ``(d_h, d_w)`` per image
from the global average of its input (a linear layer on the pooled channels)
and applies a ``kh x kw`` convolution whose tap ``(i, j)`` reads the input at
``(h0 + i * d_h, w0 + j * d_w)`` (section 3.1's equation for ``y(h0, w0)``),
the value at a fractional position taken by bilinear interpolation
``x(h, w) = sum lambda(h*, h) lambda(w*, w) x(h*, w*)`` with
``lambda(p, q) = max(0, 1 - |p - q|)`` and zero outside the map.

Because the scale is global (one per image, shared by every position), each
tap is one fractional shift of the whole map, and the shifts are separable:
the layer shifts the map along the width for every column tap at once, then
those along the height for every row tap at once (each batch of shifts is two
row gathers and a linear blend), which lays the ``kh * kw`` shifted maps side
by side on the channel axis, and multiplies them by the kernel reshaped to
``[kh * kw * C_in, C_out]``: one matrix product, the 1x1 products of all taps
at once. No per-position offsets (as deformable convolution needs) are ever
formed, and the graph stays small (two gathers per axis per layer).

Alignment: tap ``(0, 0)`` of output ``(m_h, m_w)`` sits at input row
``m_h * s - floor(r / 2)`` with ``r = (M - 1) * s + 1 - N`` (``N`` input
rows, ``M = ceil(N / s)`` output rows, ``s`` the stride), and likewise for
columns. That is where TensorFlow's SAME padding puts the centre of a
``Conv2D(dilation_rate=d)`` for every integral ``d >= 1``, so at an integral
scale the layer equals ``Conv2D(..., padding="same", dilation_rate=d)`` with
the same kernel (with stride 2 as a stride-1 dilated convolution subsampled
at those rows, which Keras' ``Conv2D`` refuses to do in one layer).

Choices the paper leaves open (also listed in :mod:`keras_pyramids.pod`):

- *Keeping the scale positive*: the linear layer predicts a log-scale ``s``
  and ``d = d0 * exp(clip(s, -log(max_scale_factor), log(max_scale_factor)))``
  with ``d0`` the dilation of the convolution it replaces: positive by
  construction, never stuck (a ReLU or clamp at 0 has no gradient there), a
  step changes the scale by a ratio (learnt scales in the paper's Table 3
  range from 0.46 to 9.34), and the clip (default factor 32) keeps ``exp``
  finite and every tap within reach of the map.
- *Start*: the linear layer starts at zero (weights and bias), so the layer
  starts as exactly the convolution it replaces (``d = d0``); the paper says
  new parameters get He initialisation, which would start every layer at a
  random scale.
- *Scale statistics*: set :attr:`GlobalScaleConv2D.scale_recorder` to a
  callable ``f(layer, scales [B, 2])``; it is called with the scales of every
  eager call (:func:`keras_pyramids.pod.scale_statistics` uses it).

Input ``[B, H, W, C_in]`` -> output ``[B, ceil(H / s), ceil(W / s), filters]``.
"""

import math

import keras
import numpy as np
from keras import ops


def _pair(value, what, layer_name, check):
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(check(v) for v in values):
        raise ValueError(f"{layer_name}: {what} must be one value or a pair as described; got {value!r}.")
    return values


def _is_positive_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def same_alignment(size, stride):
    """``(out_size, offset)``: TensorFlow SAME padding puts the centre tap of output ``m`` at input
    ``m * stride + offset`` (for any odd kernel with dilation >= 1), ``out_size = ceil(size / stride)``."""
    out_size = -(-size // stride)
    return out_size, -(((out_size - 1) * stride + 1 - size) // 2)


def _sample_rows(x, positions):
    """Bilinear samples of ``x [B, N, R, C]`` at fractional rows ``positions [B, M]`` -> ``[B, M, R, C]``.

    Rows outside ``0 .. N - 1`` read as zero.
    """
    shape = ops.shape(x)
    batch, size = shape[0], shape[1]
    flat = ops.reshape(x, (-1, shape[2], shape[3]))
    lower = ops.floor(positions)
    fraction = positions - lower
    lower = ops.cast(lower, "int32")
    first_row = ops.expand_dims(ops.arange(batch, dtype="int32") * size, 1)

    def take(rows, weight):
        inside = ops.logical_and(rows >= 0, rows < size)
        safe = ops.clip(rows, 0, size - 1) + first_row
        values = ops.take(flat, ops.reshape(safe, (-1,)), axis=0)
        values = ops.reshape(values, (batch, -1, shape[2], shape[3]))
        weight = ops.where(inside, weight, ops.zeros_like(weight))
        return values * ops.cast(weight, x.dtype)[:, :, None, None]

    return take(lower, 1.0 - fraction) + take(lower + 1, fraction)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class GlobalScaleConv2D(keras.layers.Layer):
    """POD's global scale learner convolution (section 3.1); see the module docstring.

    Args:
        filters: output channels.
        kernel_size: odd int or pair (POD uses 3).
        strides: int or pair (1 or 2 in ResNet).
        dilation_rate: the scale the layer starts at (the dilation of the
            convolution it replaces); a positive number or pair.
        use_bias: add a bias after the convolution (ResNet's convolutions have none).
        max_scale_factor: the scale stays within ``[d0 / f, d0 * f]``.
        kernel_initializer, bias_initializer: as ``keras.layers.Conv2D``.

    The weights are ``kernel [kh, kw, C_in, filters]`` (and ``bias``), laid out
    as ``Conv2D``'s so they copy across, and the scale predictor
    ``scale_predictor/kernel [C_in, 2]``, ``scale_predictor/bias [2]``
    (``(h, w)`` log-scales).
    """

    # Sublayers a pretrained plain convolution has no weights for (the ImageNet copy does not warn about them).
    new_parameters = ("scale_predictor",)

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        dilation_rate=1,
        use_bias=False,
        max_scale_factor=32.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _is_positive_int(filters):
            raise ValueError(f"{self.name}: filters must be a positive int; got {filters!r}.")
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in _pair(
            kernel_size, "kernel_size (odd positive ints)", self.name, lambda k: _is_positive_int(k) and k % 2 == 1))
        self.strides = tuple(int(s) for s in _pair(strides, "strides (positive ints)", self.name, _is_positive_int))
        self.dilation_rate = tuple(float(d) for d in _pair(
            dilation_rate, "dilation_rate (positive numbers)", self.name,
            lambda d: isinstance(d, (int, float, np.number)) and not isinstance(d, bool) and d > 0))
        if not (isinstance(max_scale_factor, (int, float)) and max_scale_factor > 1):
            raise ValueError(f"{self.name}: max_scale_factor must be a number > 1; got {max_scale_factor!r}.")
        self.max_scale_factor = float(max_scale_factor)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.scale_predictor = keras.layers.Dense(
            2, kernel_initializer="zeros", bias_initializer="zeros", name="scale_predictor")
        self.scale_recorder = None

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the input's channel count must be known; got shape {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (channels, self.filters), initializer=self.kernel_initializer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
        self.scale_predictor.build((input_shape[0], channels))

    def predict_scale(self, inputs):
        """``[B, 2]``: each image's ``(d_h, d_w)``."""
        if not self.built:
            self.build(tuple(inputs.shape))
        pooled = ops.mean(inputs, axis=(1, 2))
        limit = math.log(self.max_scale_factor)
        log_scale = ops.clip(self.scale_predictor(pooled), -limit, limit)
        return ops.exp(log_scale) * ops.convert_to_tensor(self.dilation_rate, dtype=log_scale.dtype)

    @staticmethod
    def _sample_axis(x, axis_scale, size, stride, kernel):
        """``x [B, size, R, C]`` sampled at every tap of one axis -> ``[B, kernel * out, R, C]``, tap-major."""
        out_size, offset = same_alignment(size, stride)
        centres = ops.cast(ops.arange(out_size) * stride + offset, axis_scale.dtype)
        steps = ops.cast(ops.arange(kernel) - kernel // 2, axis_scale.dtype)
        positions = centres[None, None, :] + steps[None, :, None] * axis_scale[:, None, None]
        return _sample_rows(x, ops.reshape(positions, (-1, kernel * out_size)))

    def call(self, inputs):
        scale = self.predict_scale(inputs)
        if self.scale_recorder is not None:
            self.scale_recorder(self, scale)
        _, height, width, channels = inputs.shape
        if height is None or width is None:
            raise ValueError(f"{self.name} needs static height and width; got input shape {inputs.shape}.")
        kh, kw = self.kernel_size
        (out_h, _), (out_w, _) = same_alignment(height, self.strides[0]), same_alignment(width, self.strides[1])
        # Every column tap at once (on the transposed map, so that both axes gather rows) ...
        x = self._sample_axis(ops.transpose(inputs, (0, 2, 1, 3)), scale[:, 1], width, self.strides[1], kw)
        x = ops.reshape(x, (-1, kw, out_w, height, channels))
        x = ops.reshape(ops.transpose(x, (0, 3, 2, 1, 4)), (-1, height, out_w, kw * channels))
        # ... then every row tap of those: [B, kh * out_h, out_w, kw * C].
        x = self._sample_axis(x, scale[:, 0], height, self.strides[0], kh)
        x = ops.reshape(x, (-1, kh, out_h, out_w, kw * channels))
        # Tap (a, b), channel c at a * kw * C + b * C + c: the kernel's own order.
        x = ops.reshape(ops.transpose(x, (0, 2, 3, 1, 4)), (-1, out_h, out_w, kh * kw * channels))
        outputs = ops.matmul(x, ops.reshape(self.kernel, (kh * kw * channels, self.filters)))
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[:3]
        out = [None if n is None else same_alignment(n, s)[0] for n, s in zip((height, width), self.strides)]
        return (batch, out[0], out[1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            use_bias=self.use_bias,
            max_scale_factor=self.max_scale_factor,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config
