"""GSL and FD ResNets (POD sections 3.1-3.3): the ``pod`` model option, the FD rebuild and the weight transfer.

- ``pod=None``: the baseline; ``pod="gsl"``: every 3x3 convolution of
  ``conv3``, ``conv4`` and ``conv5`` is a :class:`~keras_pyramids.layers.GlobalScaleConv2D`
  (conv3x3 factory ``"global_scale"``); ``pod={"scales": {layer: [d_h, d_w]}}``:
  the FD network, each listed layer decomposed by
  :func:`~keras_pyramids.pod.decomposition.decompose_scale` (conv3x3 factory
  ``"scale_decomposed"``). :func:`resnet_conv3x3` turns the option into the
  ``conv3x3`` argument of :func:`keras_pyramids.backbones.resnet.resnet`.
- :func:`fast_deployment_model` rebuilds any built model holding GSL stages
  (any detector of the zoo on the in-house ResNet) with FD convolutions, from
  the model's own config; :func:`transfer_weights` copies the weights.
"""

import dataclasses
import re

import keras
import numpy as np

from keras_pyramids.backbones.resnet import DEPTHS, register_conv3x3
from keras_pyramids.layers.global_scale_conv import GlobalScaleConv2D
from keras_pyramids.layers.scale_decomposed_conv import DilatedConv2D, ScaleDecomposedConv2D
from keras_pyramids.pod.decomposition import decompose_scale

# Section 3.1: GSL modules on every 3x3 of conv3, conv4 and conv5 ("the learnt scales [of conv2]
# are so close to 1 [that] it is meaningless to learn global scale in conv2").
GSL_STAGES = (3, 4, 5)
GSL = "global_scale"
FD = "scale_decomposed"
_LAYER = re.compile(r"conv(\d+)_block(\d+)_2_conv")


@register_conv3x3(GSL)
def global_scale_conv3x3(filters, kernel_size, strides, dilation_rate, name):
    """A GSL convolution starting at the stage's dilation (section 3.1)."""
    return GlobalScaleConv2D(filters, kernel_size, strides=strides, dilation_rate=dilation_rate, name=name)


@register_conv3x3(FD)
def scale_decomposed_conv3x3(filters, kernel_size, strides, dilation_rate, name, scales=None):
    """The FD convolution of layer ``name`` at its learnt scale ``scales[name]`` (section 3.2).

    A layer without a scale keeps the stage's dilation. One integral
    sub-convolution that needs no alignment fix is a plain ``Conv2D`` (a
    :class:`~keras_pyramids.layers.scale_decomposed_conv.DilatedConv2D`, the
    baseline's layer and weight names); otherwise a
    :class:`~keras_pyramids.layers.ScaleDecomposedConv2D`.
    """
    if kernel_size != 3:
        raise ValueError(f"Scale decomposition is defined for 3x3 convolutions; {name} has kernel {kernel_size}.")
    d_h, d_w = (scales or {}).get(name, (dilation_rate, dilation_rate))
    sub_convs = decompose_scale(d_h, d_w, filters)
    only = sub_convs[0]
    if len(sub_convs) == 1 and (strides == 1 or (only.kernel_size == (3, 3) and only.dilation_rate == (1, 1))):
        return DilatedConv2D(filters, only.kernel_size, strides=strides, dilation_rate=only.dilation_rate,
                             padding="same", use_bias=False, name=name)
    return ScaleDecomposedConv2D([s.to_config() for s in sub_convs], strides=strides, name=name)


def gsl_layer_names(depth, stages=GSL_STAGES):
    """Names of the 3x3 convolutions POD learns scales for in ResNet-``depth`` (``conv3_block1_2_conv`` ...)."""
    if depth not in DEPTHS:
        raise ValueError(f"Unknown ResNet depth {depth!r}; known: {sorted(DEPTHS)}.")
    return [f"conv{stage}_block{i + 1}_2_conv" for stage in stages for i in range(DEPTHS[depth][stage - 2])]


def check_scales(scales, depth):
    """``{layer: (d_h, d_w)}`` with float scales; ``ValueError`` naming an unknown layer or a bad scale."""
    if not isinstance(scales, dict) or not scales:
        raise ValueError(f"pod scales must be a non-empty dict {{layer name: [d_h, d_w]}}; got {scales!r}.")
    known = gsl_layer_names(depth)
    checked = {}
    for name, pair in scales.items():
        if name not in known:
            raise ValueError(f"pod scales name an unknown layer {name!r}: ResNet-{depth} learns scales for "
                             f"{known[0]} .. {known[-1]} (conv3..conv5 3x3 convolutions).")
        values = list(pair) if isinstance(pair, (list, tuple)) else None
        if (values is None or len(values) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v >= 0
                for v in values)):
            raise ValueError(f"pod scale of {name} must be [d_h, d_w], numbers >= 0; got {pair!r}.")
        checked[name] = (float(values[0]), float(values[1]))
    return checked


def resnet_conv3x3(pod, depth):
    """The ``conv3x3`` argument (``conv2`` .. ``conv5``) of :func:`keras_pyramids.backbones.resnet.resnet`
    for the ``pod`` model option (see the module docstring)."""
    if pod is None:
        return ("conv",) * 4
    if pod == "gsl":
        return tuple(GSL if stage in GSL_STAGES else "conv" for stage in range(2, 6))
    if isinstance(pod, dict) and set(pod) == {"scales"}:
        scales = check_scales(pod["scales"], depth)
        specs = []
        for stage in range(2, 6):
            own = {name: list(pair) for name, pair in scales.items() if name.startswith(f"conv{stage}_")}
            specs.append({"name": FD, "scales": own} if own else "conv")
        return tuple(specs)
    raise ValueError(f"pod must be None (baseline), 'gsl' (global scale learner network) or "
                     f"{{'scales': {{layer: [d_h, d_w]}}}} (fast-deployment network); got {pod!r}.")


def pod_suffix(pod):
    """The model-name suffix of the ``pod`` option: ``""``, ``"_gsl"`` or ``"_fd"`` (the paper's GSL / FD)."""
    return "" if pod is None else "_gsl" if pod == "gsl" else "_fd"


def _replace_gsl_stages(node, scales, used):
    """Walks a serialised model; every GSL stage's conv3x3 becomes the FD spec with its layers' scales."""
    if isinstance(node, list):
        return [_replace_gsl_stages(item, scales, used) for item in node]
    if not isinstance(node, dict):
        return node
    config = node.get("config")
    if node.get("class_name") == "ResNetStage" and isinstance(config, dict):
        spec = config.get("conv3x3")
        name = spec.get("name") if isinstance(spec, dict) else spec
        if name == GSL:
            prefix = f"{config['name']}_block"
            own = {layer: list(pair) for layer, pair in scales.items() if layer.startswith(prefix)}
            missing = [f"{prefix}{i + 1}_2_conv" for i in range(config["blocks"])
                       if f"{prefix}{i + 1}_2_conv" not in own]
            if missing:
                raise ValueError(f"No learnt scale for {', '.join(missing)}: the scales must cover every GSL layer.")
            used.update(own)
            return dict(node, config=dict(config, conv3x3={"name": FD, "scales": own}))
    return {key: _replace_gsl_stages(value, scales, used) for key, value in node.items()}


def gsl_layers(model):
    """The model's :class:`GlobalScaleConv2D` layers, in the order of the model's weights (network order)."""
    layers = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, GlobalScaleConv2D)]
    order = {id(variable): i for i, variable in enumerate(model.weights)}
    return sorted(layers, key=lambda layer: order.get(id(layer.weights[0]), -1) if layer.weights else -1)


def fast_deployment_model(gsl_model, scales, name=None):
    """The FD network of a GSL model: the same model with each GSL layer replaced by its decomposition.

    Works on any model whose ResNet stages use the ``"global_scale"`` 3x3
    factory (every GSL model of the zoo): it is rebuilt from its own config,
    so nothing about the model's family is assumed. Weights are not copied
    (:func:`transfer_weights` does).

    Args:
        gsl_model: a built model with GSL layers.
        scales: ``{layer name: (d_h, d_w)}`` for every GSL layer (e.g.
            :func:`keras_pyramids.pod.statistics.mean_scales` of its statistics).
        name: the new model's name (default: the GSL model's with ``_gsl``
            replaced by ``_fd``).
    """
    layers = gsl_layers(gsl_model)
    if not layers:
        raise ValueError(f"{gsl_model.name} has no GlobalScaleConv2D layers: build it with pod='gsl' "
                         "(or conv3x3='global_scale') and train it first.")
    unknown = sorted(set(scales) - {layer.name for layer in layers})
    if unknown:
        raise ValueError(f"Scales given for layers {gsl_model.name} does not have as GSL layers: {unknown}.")
    for layer_name, pair in scales.items():
        check_scales({layer_name: pair}, 101)
    used = set()
    config = _replace_gsl_stages(keras.saving.serialize_keras_object(gsl_model), scales, used)
    if used != {layer.name for layer in layers}:
        missing = sorted({layer.name for layer in layers} - used)
        raise ValueError(f"{gsl_model.name}'s GSL layers {missing} are not in ResNet stages the rebuild knows.")
    old_name = config["config"].get("name", gsl_model.name)
    new_name = name or (old_name[:-4] + "_fd" if old_name.endswith("_gsl") else old_name + "_fd")
    config["config"]["name"] = new_name
    return keras.saving.deserialize_keras_object(config)


@dataclasses.dataclass
class TransferReport:
    """What :func:`transfer_weights` did (weight paths)."""

    copied: list = dataclasses.field(default_factory=list)
    split: list = dataclasses.field(default_factory=list)  # (target, source): sub-convolution from a 3x3 kernel
    unused: list = dataclasses.field(default_factory=list)  # source weights with no target (the scale predictors)


class _PathIndex(dict):
    """Variables by path, found by their full path or else by the longest tail of it that names one
    variable: a model rebuilt from its config may build a nested stage outside its parent's name scope
    (``conv5/...`` for ``res5_head/conv5/...``), while layer names stay unique."""

    def __init__(self, variables):
        super().__init__((variable.path, variable) for variable in variables)
        tails = {}
        for path in self:
            parts = path.split("/")
            for i in range(1, len(parts) - 1):
                tails.setdefault("/".join(parts[i:]), []).append(path)
        self.tails = {tail: paths[0] for tail, paths in tails.items() if len(paths) == 1}

    def find(self, path):
        if path in self:
            return path
        parts = path.split("/")
        for i in range(len(parts) - 1):
            tail = "/".join(parts[i:])
            if tail in self.tails:
                return self.tails[tail]
        return None


_SUB_CONV_WEIGHT = re.compile(r"(.*)/(lower|upper|integral)/(kernel|bias)$")


def transfer_weights(source, target):
    """POD's weight transfer (section 3.3, Figures 4 and 5) from a GSL model to its FD model.

    Weights with the same path and shape are copied. A sub-convolution of a
    decomposed layer takes its block of output channels of the GSL kernel
    (the lower bound the first ``(1 - alpha)``, the upper bound the rest) and,
    where its kernel size is 1, the centre taps (the paper's "values of
    corresponding position": a 1x3 takes the middle row, a 3x1 the middle
    column, a 1x1 the centre).

    Returns:
        :class:`TransferReport`.

    Raises:
        ValueError: a target weight that nothing in ``source`` gives (named).
    """
    sources = _PathIndex(source.weights)
    report = TransferReport()
    used, missing = set(), []
    for variable in target.weights:
        path, shape = variable.path, tuple(variable.shape)
        same = sources.find(path)
        if same is not None and tuple(sources[same].shape) == shape:
            variable.assign(sources[same])
            report.copied.append(path)
            used.add(same)
            continue
        match = _SUB_CONV_WEIGHT.match(path)
        origin = sources.find(f"{match.group(1)}/{match.group(3)}") if match else None
        if origin is None:
            missing.append(f"{path} {shape}")
            continue
        value = np.asarray(sources[origin])
        channels = shape[-1]
        # Channel blocks are in order: the lower bound first, the upper bound last.
        start = value.shape[-1] - channels if match.group(2) == "upper" else 0
        value = value[..., start:start + channels]
        if match.group(3) == "kernel":
            rows = slice(None) if shape[0] == value.shape[0] else slice(value.shape[0] // 2, value.shape[0] // 2 + 1)
            cols = slice(None) if shape[1] == value.shape[1] else slice(value.shape[1] // 2, value.shape[1] // 2 + 1)
            value = value[rows, cols]
        if value.shape != shape:
            missing.append(f"{path} {shape} (from {origin} {tuple(sources[origin].shape)})")
            continue
        variable.assign(value)
        report.split.append((path, origin))
        used.add(origin)
    if missing:
        raise ValueError(f"Weight transfer from {source.name} to {target.name} found nothing for: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.")
    report.unused = [path for path in sources if path not in used]
    return report
