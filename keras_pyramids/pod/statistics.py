"""Scale statistics of a trained GSL network (POD section 3.1, section 4.4, Table 3, Figure 6).

:func:`scale_statistics` runs a GSL model over images and records, for each
GSL layer, the mean and standard deviation of the scales ``d_h`` and ``d_w``
it predicts (one pair per image; in the C4 detector's box head, one per
region). The paper samples "500+ images in training set" and treats the means
as fixed dilations; :func:`mean_scales` gives them in the form the FD network
(``pod={"scales": ...}``) and :func:`keras_pyramids.pod.fast_deployment_model`
take. :func:`format_scale_table` prints Table 3's layout.
"""

import datetime
import re

import numpy as np

from keras_pyramids.data import make_inference_pipeline
from keras_pyramids.pod.decomposition import decompose_scale, split_factor
from keras_pyramids.pod.networks import gsl_layers

FORMAT = "keras-pyramids pod scale statistics 1"
DEFAULT_NUM_IMAGES = 500


def _record(model, batches):
    layers = gsl_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no GlobalScaleConv2D layers: scale statistics need a GSL model "
                         "(trained with model_kwargs {\"pod\": \"gsl\"}).")
    collected = {layer.name: [] for layer in layers}

    def record(layer, scales):
        collected[layer.name].append(np.asarray(scales, dtype=np.float64))

    for layer in layers:
        layer.scale_recorder = record
    images_seen = 0
    try:
        for images in batches:
            # An eager call: every GSL layer hands its scales to the recorder.
            model(images, training=False)
            images_seen += int(images.shape[0])
    finally:
        for layer in layers:
            layer.scale_recorder = None
    return layers, collected, images_seen


def scale_statistics(model, examples, num_images=DEFAULT_NUM_IMAGES, batch_size=8):
    """Mean and standard deviation of each GSL layer's learnt scales over ``num_images`` images.

    Args:
        model: a GSL detector (``model.image_size``; any model taking
            ``[B, H, W, 3]`` images works).
        examples: ``tf.data.Dataset`` of examples (``DetectionDataset.examples``);
            the first ``num_images`` are used (the zoo's splits are in random order).
        num_images: how many images (the paper: 500+).
        batch_size: images per forward pass.

    Returns:
        A JSON-ready dict: ``{"format", "num_images", "created", "layers": {name:
        {"d_h": {"mean", "std"}, "d_w": {"mean", "std"}, "samples", "strides",
        "initial": [d_h, d_w]}}}``, layers in network order.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive int; got {num_images!r}.")
    batches = (images for images, _ in make_inference_pipeline(examples.take(num_images), model.image_size,
                                                                 batch_size))
    layers, collected, images_seen = _record(model, batches)
    if not images_seen:
        raise ValueError("No image to compute scale statistics on: the split is empty.")
    stats = {}
    for layer in layers:
        values = np.concatenate(collected[layer.name], axis=0)
        stats[layer.name] = {
            "d_h": {"mean": float(values[:, 0].mean()), "std": float(values[:, 0].std())},
            "d_w": {"mean": float(values[:, 1].mean()), "std": float(values[:, 1].std())},
            "samples": int(values.shape[0]),
            "strides": list(layer.strides),
            "initial": list(layer.dilation_rate),
        }
    return {"format": FORMAT, "model": model.name, "num_images": images_seen,
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "layers": stats}


def check_statistics(stats, where="scale statistics"):
    """Raises ``ValueError`` unless ``stats`` is what :func:`scale_statistics` writes."""
    if not isinstance(stats, dict) or stats.get("format") != FORMAT or not isinstance(stats.get("layers"), dict):
        raise ValueError(f"{where} is not a keras-pyramids scale statistics file (format {FORMAT!r}).")
    for name, entry in stats["layers"].items():
        try:
            [float(entry[axis][key]) for axis in ("d_h", "d_w") for key in ("mean", "std")]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: layer {name} has no d_h / d_w mean and std.") from None
    return stats


def mean_scales(stats):
    """``{layer: [mean d_h, mean d_w]}``: the fixed scales of the FD network (section 3.1)."""
    check_statistics(stats)
    return {name: [entry["d_h"]["mean"], entry["d_w"]["mean"]] for name, entry in stats["layers"].items()}


def _short(name):
    """``conv4_block6_2_conv`` -> ``R46`` (the paper's column names)."""
    match = re.fullmatch(r"conv(\d+)_block(\d+)_2_conv", name)
    return f"R{match.group(1)}{match.group(2)}" if match else name


def _first_and_last(names):
    stages = {}
    for name in names:
        stages.setdefault(_short(name)[:2], []).append(name)
    return [n for group in stages.values() for n in sorted({group[0], group[-1]}, key=group.index)]


def format_scale_table(stats, layers="first_last", title=None):
    """Table 3's layout: one ``h`` and one ``w`` row, a ``mean ± std`` column per layer.

    Args:
        stats: :func:`scale_statistics` output.
        layers: ``"first_last"`` (the first and last block of each stage, as
            Table 3) or ``"all"``.
        title: first column's text (default the model name).

    :func:`format_decomposition` prints each layer's FD decomposition.
    """
    check_statistics(stats)
    names = list(stats["layers"])
    if layers == "first_last":
        names = _first_and_last(names)
    elif layers != "all":
        raise ValueError(f"layers must be 'first_last' or 'all'; got {layers!r}.")
    title = title or stats.get("model", "")
    cells = {axis: [f"{stats['layers'][n][f'd_{axis}']['mean']:.2f} ± {stats['layers'][n][f'd_{axis}']['std']:.2f}"
                    for n in names] for axis in ("h", "w")}
    widths = [max(len(_short(n)), len(cells["h"][i]), len(cells["w"][i])) for i, n in enumerate(names)]
    first = max(len(title), len("Scale Rate"))
    lines = [f"Distribution of learnt scales over {stats.get('num_images', '?')} images (POD Table 3 layout)",
             "  ".join([f"{'Method':<{first}}", "Scale Rate"] + [f"{_short(n):>{w}}" for n, w in zip(names, widths)])]
    for axis in ("h", "w"):
        label = title if axis == "h" else ""
        row = [f"{label:<{first}}", f"{axis:<10}"] + [f"{c:>{w}}" for c, w in zip(cells[axis], widths)]
        lines.append("  ".join(row))
    return "\n".join(lines)


def format_decomposition(stats, channels):
    """One line per layer: mean scale, split factor and sub-convolutions of its decomposition.

    Args:
        stats: :func:`scale_statistics` output.
        channels: ``{layer: output channels}``.
    """
    lines = []
    for name, (d_h, d_w) in mean_scales(stats).items():
        parts = decompose_scale(d_h, d_w, channels[name])
        described = " + ".join(f"{p.filters}ch {p.kernel_size[0]}x{p.kernel_size[1]} dil {p.dilation_rate}"
                               for p in parts)
        lines.append(f"{_short(name):>5} ({d_h:.2f}, {d_w:.2f})  alpha {split_factor(d_h, d_w):.2f}  {described}")
    return "\n".join(lines)
