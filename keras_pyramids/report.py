"""The model report: parameters, FLOPs, anchors and pyramid shapes next to the papers' figures."""

import numpy as np

from keras_pyramids.backbones.ipg_net import IPGFusionModule, IPGTransformationModule, ipg_net
from keras_pyramids.flops import count_flops
from keras_pyramids.image_size import to_hw
from keras_pyramids.registry import build_model, factory_defaults

# Published figures to print next to ours: PPN paper Table 1 (COCO, MobileNet
# v1, 300x300). The paper's FLOPs are 2x its multiply-adds (SSD MobileNet v1
# has ~1.2G multiply-adds), i.e. the TF profiler's convention used here.
PAPER_FIGURES = {
    "ssd_mobilenet": {"flops": 2.48e9, "params": 6.83e6, "mAP": 20.0, "gpu_ms": 27,
                      "source": "PPN paper Table 1"},
    "ppn_mobilenet": {"flops": 2.35e9, "params": 2.18e6, "mAP": 19.7, "gpu_ms": 26,
                      "source": "PPN paper Table 1"},
    # RetinaNet R50-FPN: detectron2's model zoo (P6 from C5, 80 classes: 37.9M
    # parameters, 37.4 box AP on val2017 for the 1x schedule at 800 px) and the
    # Model Garden's 640x640 row, "97.0 B FLOPs" counted as multiply-adds (as
    # its ResNet-50's 4.1 B at 224), so 194 B here; its 34.0M parameters are
    # for P6 from P5 and 91 classes. Ours counts batch-norm statistics too (~0.1M).
    "retinanet_resnet50_fpn": {"flops": 2 * 97.0e9, "params": 37.9e6, "mAP": 37.4,
                               "source": "detectron2 model zoo (params, 1x AP at 800 px); "
                                         "Model Garden MODEL_GARDEN.md (97.0 B multiply-adds at 640x640)"},
}

# Input side of a model whose factory has no image_size and whose input is unsized.
_FALLBACK_SIZE = 224


def _report_size(name, model):
    """The input size the model is reported at: its own, its input's, or its factory's default."""
    size = getattr(model, "image_size", None)
    if size is None:
        input_hw = model.input_shape[1:3]
        size = tuple(input_hw) if None not in input_hw else \
            (factory_defaults(name).get("image_size") or _FALLBACK_SIZE)
    return to_hw(size)


def model_report(name, image_size=None, **kwargs):
    """Parameters, FLOPs, anchors and pyramid shapes of the registered model ``name``.

    Args:
        name: registered model name.
        image_size: input size (int or ``(H, W)``); default the model's own.
        **kwargs: other factory arguments.

    Returns:
        dict with ``model``, ``image_size`` ``[H, W]``, ``params``, ``flops``
        (TF profiler, 1 multiply-add = 2 FLOPs), for detectors ``anchors`` and
        ``pyramid`` (feature map shapes), and ``paper`` (published figures) when known.
    """
    if image_size is not None:
        kwargs["image_size"] = image_size
    model = build_model(name, **kwargs)
    size = _report_size(name, model)
    report = {
        "model": name,
        "image_size": list(size),
        "params": int(model.count_params()),
        # What PyTorch's parameters() counts (batch-norm statistics are buffers there).
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "flops": count_flops(model, size),
    }
    if hasattr(model, "anchors"):
        report["anchors"] = int(len(model.anchors))
    if hasattr(model, "feature_shapes"):
        report["pyramid"] = [list(s) for s in model.feature_shapes]
    guidance = guidance_report(model, size)
    if guidance:
        report["ipg"] = guidance
    if name in PAPER_FIGURES:
        report["paper"] = PAPER_FIGURES[name]
    return report


def guidance_report(model, image_size):
    """For a detector on IPG-Net: its backbone next to the plain-ResNet twin at the same input.

    The twin is the same :func:`~keras_pyramids.backbones.ipg_net.ipg_net` call
    with ``fusion_stages=()`` (same stages, extra stages and output keys, no
    image pyramid guidance). Returns ``None`` for other models, else a dict of
    ``params`` / ``flops`` of ``backbone`` and ``twin``, and the parameters of
    the ``transformation`` and ``fusion`` modules.
    """
    backbone = getattr(model, "backbone", None)
    settings = getattr(backbone, "ipg_settings", None)
    if not settings:
        return None
    twin = ipg_net(**dict(settings, fusion_stages=()))

    def module_params(cls):
        return int(sum(layer.count_params() for layer in backbone.layers if isinstance(layer, cls)))

    return {
        "fusion": settings["fusion"], "fusion_stages": list(settings["fusion_stages"]),
        "num_stages": settings["num_stages"], "keep": settings["keep"],
        "backbone": {"params": int(backbone.count_params()), "flops": count_flops(backbone, image_size)},
        "twin": {"params": int(twin.count_params()), "flops": count_flops(twin, image_size)},
        "transformation_params": module_params(IPGTransformationModule),
        "fusion_params": module_params(IPGFusionModule),
    }


def format_report(report):
    """The lines ``keras-pyramids report`` prints for one :func:`model_report`."""
    paper = report.get("paper")
    lines = [f"{report['model']} at {report['image_size'][0]}x{report['image_size'][1]}:"]
    line = f"  params {report['params'] / 1e6:.2f}M"
    if paper:
        line += f" (paper {paper['params'] / 1e6:.2f}M)"
    line += f"   FLOPs {report['flops'] / 1e9:.2f}B"
    if paper:
        line += f" (paper {paper['flops'] / 1e9:.2f}B)"
    lines.append(line + "   [FLOPs: TF profiler, 1 multiply-add = 2 FLOPs]")
    if "anchors" in report:
        lines.append(f"  anchors {report['anchors']}   pyramid "
                     + " ".join(f"{h}x{w}" for h, w in report.get("pyramid", [])))
    if "ipg" in report:
        lines.extend(_format_guidance(report["ipg"]))
    if paper:
        speed = f", {paper['gpu_ms']} ms on a TITAN X GPU" if "gpu_ms" in paper else ""
        lines.append(f"  paper: COCO mAP {paper['mAP']}{speed} ({paper['source']})")
    return "\n".join(lines)


def _format_guidance(ipg):
    ours, twin = ipg["backbone"], ipg["twin"]
    added_params, added_flops = ours["params"] - twin["params"], ours["flops"] - twin["flops"]
    stages = ", ".join(map(str, ipg["fusion_stages"])) or "none"
    keep = " (keep)" if ipg["keep"] else ""
    return [
        f"  IPG-Net backbone ({ipg['num_stages']}{keep} stages, {ipg['fusion']} fusion at stage(s) {stages}): "
        f"params {ours['params'] / 1e6:.2f}M, FLOPs {ours['flops'] / 1e9:.2f}B",
        f"  plain ResNet twin (same stages, no guidance): params {twin['params'] / 1e6:.2f}M, "
        f"FLOPs {twin['flops'] / 1e9:.2f}B",
        f"  transformation + fusion modules add {added_params / 1e6:.2f}M params "
        f"({added_params / twin['params']:+.1%}; transformation {ipg['transformation_params'] / 1e6:.2f}M, "
        f"fusion {ipg['fusion_params'] / 1e6:.2f}M) and {added_flops / 1e9:.2f}B FLOPs "
        f"({added_flops / twin['flops']:+.1%})",
    ]
