"""The fast-deployment (FD) convolution of POD (section 3.2, Figures 3 and 5): sub-convolutions with fixed
integral dilations, outputs concatenated.

:class:`ScaleDecomposedConv2D` replaces a :class:`~keras_pyramids.layers.GlobalScaleConv2D`
after training: its sub-convolutions (from
:func:`keras_pyramids.pod.decompose_scale`) are ordinary ``keras.layers.Conv2D``
layers with integral ``dilation_rate`` and kernel sizes 3 or 1 per direction,
each producing a contiguous block of the output channels, lower bound first.
Every runtime (TFLite, TensorRT, TVM) runs them as plain convolutions.

Alignment is the GSL layer's (TensorFlow SAME padding of a 3x3 dilated
convolution), so an FD layer with one integral sub-convolution equals the GSL
layer at that scale. The sub-convolutions are :class:`DilatedConv2D`: a
``Conv2D`` whose dilation is one native TensorFlow convolution rather than
``SpaceToBatchND`` around one. Two cases need care, both only with stride 2 (a 3x3 with
the stride, ``stride_in_1x1=False``):

- kernel size 1 with stride 2 on an even side: SAME would read rows
  ``0, 2, ...``, the 3x3's centres are rows ``1, 3, ...``; the input is cropped
  by the offset first;
- dilation > 1 with stride 2: Keras' ``Conv2D`` refuses both at once, so the
  sub-convolution runs at stride 1 and its output is subsampled at the
  centres (4x that sub-convolution's work; never in the default
  ``stride_in_1x1=True`` ResNets, whose 3x3 convolutions have stride 1).

Input ``[B, H, W, C_in]`` -> output ``[B, ceil(H / s), ceil(W / s), sum(filters)]``.
"""

import keras
from keras import ops

from keras_pyramids.layers.global_scale_conv import same_alignment

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

_BOUNDS = ("lower", "upper", "integral")


@keras.saving.register_keras_serializable(package="keras_pyramids")
class DilatedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose dilation runs as one native dilated convolution on TensorFlow.

    Keras' ``Conv2D`` goes through ``tf.nn.convolution``, which wraps a dilated
    convolution in ``SpaceToBatchND`` / ``BatchToSpaceND`` (measured up to 2x the
    time of the undilated convolution on CPU); ``tf.nn.conv2d`` with
    ``dilations`` is one ``Conv2D`` op (oneDNN on CPU, ``CONV_2D`` with dilation
    factors in TFLite). Same weights, config and results as ``Conv2D``; other
    backends use ``Conv2D``'s own path.
    """

    def convolution_op(self, inputs, kernel):
        if keras.backend.backend() != "tensorflow" or self.data_format != "channels_last" or self.groups != 1:
            return super().convolution_op(inputs, kernel)
        return tf.nn.conv2d(inputs, kernel, strides=list(self.strides), padding=self.padding.upper(),
                            dilations=list(self.dilation_rate))


def _check_sub_conv(spec, index, layer_name):
    if not isinstance(spec, dict):
        raise ValueError(f"{layer_name}: sub_convs[{index}] must be a dict; got {spec!r}.")
    try:
        filters = int(spec["filters"])
        kernel = tuple(int(k) for k in spec["kernel_size"])
        dilation = tuple(int(d) for d in spec["dilation_rate"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{layer_name}: sub_convs[{index}] needs filters, kernel_size (kh, kw) and "
                         f"dilation_rate (dh, dw); got {spec!r}.") from None
    bound = spec.get("bound", _BOUNDS[index] if index < 2 else None)
    if (filters < 1 or len(kernel) != 2 or len(dilation) != 2 or any(k not in (1, 3) for k in kernel)
            or any(d < 1 for d in dilation) or bound not in _BOUNDS):
        raise ValueError(f"{layer_name}: sub_convs[{index}] must have filters >= 1, kernel sizes 1 or 3, "
                         f"dilations >= 1 and bound in {_BOUNDS}; got {spec!r}.")
    return {"filters": filters, "kernel_size": kernel, "dilation_rate": dilation, "bound": bound}


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ScaleDecomposedConv2D(keras.layers.Layer):
    """POD's fast-deployment convolution; see the module docstring.

    Args:
        sub_convs: list of ``{"filters", "kernel_size": (kh, kw),
            "dilation_rate": (dh, dw), "bound"}`` in output-channel order
            (``SubConv.to_config()`` of :func:`keras_pyramids.pod.decompose_scale`).
        strides: int (the stride of the convolution it replaces).
        use_bias: biases in the sub-convolutions.

    Sub-layers are named by their bound (``lower``, ``upper`` or ``integral``),
    so weights read ``{name}/lower/kernel``.
    """

    def __init__(self, sub_convs, strides=1, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sub_convs, (list, tuple)) or not 1 <= len(sub_convs) <= 2:
            raise ValueError(
                f"{self.name}: sub_convs must be a list of one or two sub-convolutions; got {sub_convs!r}.")
        self.sub_convs = [_check_sub_conv(spec, i, self.name) for i, spec in enumerate(sub_convs)]
        if len({spec["bound"] for spec in self.sub_convs}) != len(self.sub_convs):
            raise ValueError(f"{self.name}: sub-convolutions need different bounds; got {sub_convs!r}.")
        if isinstance(strides, bool) or not isinstance(strides, int) or strides < 1:
            raise ValueError(f"{self.name}: strides must be a positive int; got {strides!r}.")
        self.strides = strides
        self.use_bias = bool(use_bias)
        self.filters = sum(spec["filters"] for spec in self.sub_convs)
        self.convs = []
        for spec in self.sub_convs:
            dilated = any(d > 1 and k > 1 for d, k in zip(spec["dilation_rate"], spec["kernel_size"]))
            spec["subsample"] = strides > 1 and dilated
            self.convs.append(DilatedConv2D(
                spec["filters"], spec["kernel_size"], strides=1 if spec["subsample"] else strides,
                dilation_rate=spec["dilation_rate"], padding="same", use_bias=self.use_bias, name=spec["bound"]))

    def _crops(self, input_shape, spec):
        """Input rows / columns to skip first (kernel size 1 at stride > 1), per spatial axis."""
        if spec["subsample"] or self.strides == 1:
            return (0, 0)
        return tuple(same_alignment(n, self.strides)[1] if k == 1 else 0
                     for n, k in zip(input_shape[1:3], spec["kernel_size"]))

    def build(self, input_shape):
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(f"{self.name} needs static height and width; got input shape {input_shape}.")
        for spec, conv in zip(self.sub_convs, self.convs):
            top, left = self._crops(input_shape, spec)
            conv.build((input_shape[0], input_shape[1] - top, input_shape[2] - left, input_shape[3]))

    def call(self, inputs):
        outputs = []
        for spec, conv in zip(self.sub_convs, self.convs):
            top, left = self._crops(inputs.shape, spec)
            y = conv(inputs[:, top:, left:])
            if spec["subsample"]:
                (out_h, off_h), (out_w, off_w) = (same_alignment(n, self.strides) for n in inputs.shape[1:3])
                s = self.strides
                y = y[:, off_h:off_h + (out_h - 1) * s + 1:s, off_w:off_w + (out_w - 1) * s + 1:s]
            outputs.append(y)
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        out = [None if n is None else same_alignment(n, self.strides)[0] for n in input_shape[1:3]]
        return (input_shape[0], out[0], out[1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            sub_convs=[{k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items() if k != "subsample"}
                       for spec in self.sub_convs],
            strides=self.strides,
            use_bias=self.use_bias,
        )
        return config
