"""The evaluation protocols a detector's numbers can come from, by name.

``"coco"`` (pycocotools' ``COCOeval``, the default of every dataset but Pascal
VOC), ``"voc2007"`` (Pascal VOC AP at IoU 0.5 with the VOC2007 11-point
interpolation, the default of ``voc/2007``) and ``"voc2010"`` (the same with
the VOC2010+ area under the curve). A dataset names its default
(``DetectionDataset.protocol``); ``evaluate --protocol`` and
``TrainConfig.eval_protocol`` choose another.
"""

import dataclasses
import functools
from typing import Callable, Tuple

from keras_pyramids.evaluation import voc_metrics
from keras_pyramids.evaluation.coco_metrics import STAT_NAMES, coco_evaluate


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: its key in :data:`PROTOCOLS`.
        title: how reports name it (``"COCO"``, ``"Pascal VOC2007"``).
        description: what the numbers are.
        evaluate: ``(ground_truth, results, image_ids=None, verbose=False) ->
            metrics dict``.
        summary: the metrics printed in one line and logged during training
            (as ``val_<name>``).
    """

    name: str
    title: str
    description: str
    evaluate: Callable
    summary: Tuple[str, ...]


PROTOCOLS = {
    "coco": Protocol(
        "coco", "COCO",
        "pycocotools COCOeval (bbox): AP over IoU 0.50:0.05:0.95, 101-point interpolation; "
        "sizes by annotation area; crowd regions ignored",
        coco_evaluate, STAT_NAMES[:6]),
    "voc2007": Protocol(
        "voc2007", "Pascal VOC2007",
        "AP at IoU 0.5, VOC2007 11-point interpolation; difficult objects ignored",
        functools.partial(voc_metrics.voc_evaluate, interpolation=voc_metrics.ELEVEN_POINT), ("mAP",)),
    "voc2010": Protocol(
        "voc2010", "Pascal VOC2010+",
        "AP at IoU 0.5, area under the precision/recall curve (VOC2010 and later); "
        "difficult objects ignored",
        functools.partial(voc_metrics.voc_evaluate, interpolation=voc_metrics.AREA), ("mAP",)),
}


def get_protocol(name):
    """The :class:`Protocol` called ``name``; a named error lists the known ones."""
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown evaluation protocol {name!r}; choose one of {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


def summary_names(metrics):
    """The headline metric names of the protocol that produced ``metrics``."""
    return get_protocol(metrics.get("protocol", "coco")).summary


def format_metrics(metrics, names=None):
    """One line such as ``AP 0.123  AP50 0.321 ...`` (-1 means no ground truth to measure)."""
    names = summary_names(metrics) if names is None else names
    return "  ".join(f"{name} {metrics[name]:.3f}" for name in names if name in metrics)


def describe_metrics(metrics, where):
    """A few lines for the terminal: which protocol, on what, and the numbers."""
    protocol = get_protocol(metrics.get("protocol", "coco"))
    counts = f"{metrics.get('num_images', '?')} images, {metrics.get('num_detections', '?')} detections"
    undefined = "of that size" if protocol.name == "coco" else "of that class"
    lines = [f"{protocol.title} metrics on {where} ({counts}; -1 = no ground truth {undefined}):",
             f"  protocol {protocol.name}: {protocol.description}"]
    names = protocol.summary
    lines.append("  " + "  ".join(f"{name:>6}" for name in names))
    lines.append("  " + "  ".join(f"{metrics[name]:6.3f}" for name in names))
    per_class = list(metrics.get("AP_per_class", {}).items())
    for start in range(0, len(per_class), 5):
        lines.append("  " + "  ".join(f"{name} {ap:.3f}" for name, ap in per_class[start:start + 5]))
    return "\n".join(lines)
