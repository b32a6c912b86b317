"""Anchor coverage: which ground-truth boxes can a detector's anchors match at all?

A single-shot detector learns a box only through the anchors matched to it
(:mod:`keras_pyramids.ops.matcher`): an anchor whose IoU with the box reaches
the model's ``matched_threshold`` (0.5 in the PPN / SSD configs), and, with
``force_match``, the box's single best anchor however low its IoU (SSD section
2.2). A box whose best IoU is far below the threshold trains on one poorly
placed anchor, or on none when that anchor goes to another box; at test time
it needs a large regression from that anchor. Such boxes are usually the small
ones, which is where a low APs often comes from.

:func:`anchor_coverage` runs the model's own matcher on every image of a
dataset and records, for every ground-truth box, the best IoU any anchor
reaches and how many anchors the matcher gives it; :meth:`AnchorCoverage.summary`
groups the boxes by COCO size (small < 32^2 <= medium < 96^2 <= large, areas in
pixels of the original image, as COCO's APs / APm / APl) and by class, and
:func:`plot_anchor_coverage` draws best IoU against box size with the
threshold line. ``keras-pyramids anchors`` is the command for it.
"""

import dataclasses
import math
import os
from typing import List

import numpy as np
import tensorflow as tf
from keras.utils import bounding_boxes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from keras_pyramids.ops import matcher
from keras_pyramids.progress import Progress

# COCO's object sizes (cocoeval.Params.areaRng): area in pixels.
SMALL_AREA = 32 ** 2
LARGE_AREA = 96 ** 2
SIZES = ("small", "medium", "large")

# How the matcher treats a box: at least one anchor at IoU >= matched_threshold,
# only the forced best anchor (below the threshold), or no anchor at all.
MATCHED, FORCED, NONE = "matched", "forced", "none"
STATUSES = (MATCHED, FORCED, NONE)


def matching_settings(model):
    """The anchors and the matcher of a detector: the one place that reads them from the model.

    Single-shot detectors match with their ``label_encoder`` (TF Object
    Detection API rule: ``force_match`` gives each box its one best anchor);
    two-stage detectors are looked at through their RPN's anchors and
    ``rpn_label_encoder`` (detectron2's rule: every anchor tied at a box's best
    IoU is a low-quality match, shown as "forced").

    Returns:
        ``(anchors float32 [N, 4] normalised yxyx, {"matched_threshold",
        "unmatched_threshold", "force_match"}, match)`` where ``match(iou [M, N])``
        returns the matcher's int32 ``[N]`` (box index, or negative).
    """
    anchors = np.asarray(model.anchors, np.float32)
    encoder = getattr(model, "label_encoder", None)
    if encoder is not None:
        settings = {
            "matched_threshold": float(encoder.matched_threshold),
            "unmatched_threshold": float(encoder.unmatched_threshold),
            "force_match": bool(encoder.force_match),
        }

        def match(iou):
            return matcher.argmax_match(iou, **settings)

        return anchors, settings, match
    rpn = model.rpn_label_encoder
    settings = {
        "matched_threshold": float(rpn.positive_threshold),
        "unmatched_threshold": float(rpn.negative_threshold),
        "force_match": bool(rpn.allow_low_quality_matches),
    }

    def match(iou):
        valid = tf.ones(tf.shape(iou)[:1], tf.bool)[None]
        return matcher.batched_argmax_match(iou[None], valid, settings["matched_threshold"],
                                            settings["unmatched_threshold"], settings["force_match"])[0]

    return anchors, settings, match


def size_of_area(area):
    """COCO size name of a box area in pixels."""
    return "small" if area < SMALL_AREA else ("medium" if area < LARGE_AREA else "large")


@dataclasses.dataclass
class AnchorCoverage:
    """Per-box coverage of a dataset by a model's anchors (one entry per ground-truth box).

    Attributes:
        image_ids: image id of each box.
        classes: 0-based class of each box.
        widths, heights: box size in pixels of the original image.
        best_iou: best IoU of the box with any anchor.
        num_anchors: anchors the matcher assigns to the box (forced one included).
        status: :data:`MATCHED`, :data:`FORCED` or :data:`NONE` per box.
        class_names: name of each class index.
        matched_threshold, unmatched_threshold, force_match: the matcher settings.
        total_anchors: number of anchors of the model.
        num_images: images looked at.
    """

    image_ids: np.ndarray
    classes: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    best_iou: np.ndarray
    num_anchors: np.ndarray
    status: np.ndarray
    class_names: List[str]
    matched_threshold: float
    unmatched_threshold: float
    force_match: bool
    total_anchors: int
    num_images: int

    @property
    def areas(self):
        return self.widths * self.heights

    @property
    def sizes(self):
        """COCO size name of each box."""
        return np.array([size_of_area(a) for a in self.areas], dtype=object)

    def _group(self, mask):
        count = int(mask.sum())
        if count == 0:
            return {"boxes": 0}
        status = self.status[mask]
        best = self.best_iou[mask]
        return {
            "boxes": count,
            "mean_best_iou": float(best.mean()),
            "median_best_iou": float(np.median(best)),
            MATCHED: int((status == MATCHED).sum()),
            FORCED: int((status == FORCED).sum()),
            NONE: int((status == NONE).sum()),
            "mean_anchors_per_box": float(self.num_anchors[mask].mean()),
        }

    def summary(self):
        """Counts overall, per COCO size and per class.

        Returns:
            dict with ``"all"``, ``"by_size"`` ``{small, medium, large}`` and
            ``"by_class"`` ``{name: ...}``, each ``{"boxes", "mean_best_iou",
            "median_best_iou", "matched", "forced", "none",
            "mean_anchors_per_box"}`` (only ``"boxes"`` when empty), plus the
            matcher settings.
        """
        sizes = self.sizes
        everything = np.ones(len(self.best_iou), bool)
        return {
            "matched_threshold": self.matched_threshold,
            "unmatched_threshold": self.unmatched_threshold,
            "force_match": self.force_match,
            "anchors": self.total_anchors,
            "images": self.num_images,
            "all": self._group(everything),
            "by_size": {size: self._group(sizes == size) for size in SIZES},
            "by_class": {name: self._group(self.classes == index)
                         for index, name in enumerate(self.class_names)},
        }

    def records(self):
        """One dict per box: ``image_id``, ``class``, ``width``, ``height``, ``size``,
        ``best_iou``, ``anchors``, ``status``."""
        return [
            {"image_id": int(i), "class": self.class_names[int(c)] if 0 <= c < len(self.class_names)
             else int(c), "width": float(w), "height": float(h), "size": size_of_area(w * h),
             "best_iou": float(b), "anchors": int(n), "status": str(s)}
            for i, c, w, h, b, n, s in zip(self.image_ids, self.classes, self.widths, self.heights,
                                           self.best_iou, self.num_anchors, self.status)
        ]

    def format(self):
        """The summary as the text table ``keras-pyramids anchors`` prints."""
        summary = self.summary()
        threshold = self.matched_threshold
        forced = "force-matched only" if self.force_match else "(no force match)"
        lines = [
            f"Anchor coverage of {summary['all']['boxes']} ground-truth boxes in {self.num_images} "
            f"images by {self.total_anchors} anchors (matched_threshold {threshold:g}, "
            f"force_match {self.force_match}):",
            f"  {'':<12}{'boxes':>7}{'best IoU':>10}{'median':>8}  {'>= ' + format(threshold, 'g'):>9}"
            f"  {'forced':>7}{'none':>7}  {'anchors/box':>11}",
        ]

        def row(name, group):
            if not group["boxes"]:
                return f"  {name:<12}{0:>7}"
            boxes = group["boxes"]

            forced_share = f"{group[FORCED] / boxes:.0%}" if self.force_match else "-"
            return (f"  {name:<12}{boxes:>7}{group['mean_best_iou']:>10.3f}"
                    f"{group['median_best_iou']:>8.3f}  {group[MATCHED] / boxes:>9.0%}"
                    f"  {forced_share:>7}{group[NONE] / boxes:>7.0%}"
                    f"  {group['mean_anchors_per_box']:>11.2f}")

        lines.append(row("all", summary["all"]))
        lines.append("  by size (COCO: small < 32x32 px <= medium < 96x96 px <= large):")
        lines += [row(size, summary["by_size"][size]) for size in SIZES]
        lines.append("  by class:")
        lines += [row(name[:12], group) for name, group in summary["by_class"].items()]
        lines.append(f"  ('>= {threshold:g}': boxes with an anchor at IoU >= the matching threshold; "
                     f"'forced': {forced}, trained on one anchor below it; 'none': no anchor at all)")
        return "\n".join(lines)


def _matcher_function(anchors, match):
    """A traced ``boxes [M, 4] -> (iou [M, N], matches [N])`` with the model's matcher."""
    anchors = tf.constant(anchors, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def iou_and_matches(boxes):
        iou = bounding_boxes.compute_iou(boxes, anchors, bounding_box_format="yxyx")
        return iou, match(iou)

    return iou_and_matches


def box_coverage(iou, matches, matched_threshold):
    """Best IoU, assigned anchor count and status of each box of one image.

    Args:
        iou: ``[M, N]`` IoU of the boxes with the anchors.
        matches: ``[N]`` the matcher's result (box index, or negative).
        matched_threshold: the matcher's threshold.

    Returns:
        ``(best_iou [M], num_anchors [M], status [M])``.
    """
    iou = np.asarray(iou, np.float64)
    matches = np.asarray(matches)
    num_boxes = iou.shape[0]
    if num_boxes == 0:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(num_boxes)
    assigned = matches >= 0
    counts = np.bincount(matches[assigned], minlength=num_boxes)
    above = np.zeros(num_boxes, np.int64)
    anchor_index = np.nonzero(assigned)[0]
    box_index = matches[assigned]
    strong = iou[box_index, anchor_index] >= matched_threshold
    np.add.at(above, box_index[strong], 1)
    status = np.where(above > 0, MATCHED, np.where(counts > 0, FORCED, NONE)).astype(object)
    return best, counts, status


def anchor_coverage(model, dataset, max_images=None, progress=False):
    """Runs the model's matcher on a dataset's ground truth and records every box's coverage.

    Args:
        model: a detector (its anchors and matcher settings are read by
            :func:`matching_settings`).
        dataset: a ``DetectionDataset`` (``keras_pyramids.data.load_dataset``).
        max_images: look at the first ``max_images`` images only.
        progress: show a progress bar.

    Returns:
        :class:`AnchorCoverage`.
    """
    anchors, settings, matcher_fn = matching_settings(model)
    match = _matcher_function(anchors, matcher_fn)
    examples = dataset.examples
    total = dataset.num_examples
    if max_images is not None:
        examples = examples.take(int(max_images))
        total = min(int(max_images), total) if total is not None else int(max_images)
    bar = Progress(total, "image", title="Matching anchors") if progress else None
    columns = {key: [] for key in ("image_ids", "classes", "widths", "heights", "best_iou",
                                   "num_anchors", "status")}
    num_images = 0
    for example in examples.as_numpy_iterator():
        boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
        height, width = example["image"].shape[:2]
        iou, matches = match(tf.constant(boxes))
        best, counts, status = box_coverage(iou.numpy(), matches.numpy(), settings["matched_threshold"])
        columns["image_ids"].append(np.full(len(boxes), int(example["image_id"]), np.int64))
        columns["classes"].append(np.asarray(example["classes"], np.int64).reshape(-1))
        columns["widths"].append((boxes[:, 3] - boxes[:, 1]).astype(np.float64) * width)
        columns["heights"].append((boxes[:, 2] - boxes[:, 0]).astype(np.float64) * height)
        columns["best_iou"].append(best)
        columns["num_anchors"].append(counts)
        columns["status"].append(status)
        num_images += 1
        if bar is not None:
            bar.update(num_images)
    if bar is not None:
        bar.finish()
    empty = {"image_ids": np.int64, "classes": np.int64, "num_anchors": np.int64, "status": object}
    arrays = {key: np.concatenate(values) if values else np.zeros(0, empty.get(key, np.float64))
              for key, values in columns.items()}
    arrays["status"] = arrays["status"].astype(object)
    return AnchorCoverage(**arrays, class_names=list(dataset.class_names),
                          total_anchors=int(len(anchors)), num_images=num_images,
                          **settings)


_STATUS_STYLE = {MATCHED: ("tab:green", "anchor at IoU >= threshold"),
                 FORCED: ("tab:orange", "force-matched only"),
                 NONE: ("tab:red", "no anchor")}


def plot_anchor_coverage(coverage, path, title=None, overwrite=False):
    """Saves a plot of best anchor IoU against box size (sqrt of the area, pixels).

    One dot per ground-truth box, coloured by how the matcher treats it; the
    matching threshold is the horizontal line, COCO's small / medium / large
    limits (32 and 96 px) the vertical ones.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; not overwriting it.")
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    side = np.sqrt(np.maximum(coverage.areas, 1e-6))
    for status in STATUSES:
        mask = coverage.status == status
        if mask.any():
            colour, label = _STATUS_STYLE[status]
            axes.scatter(side[mask], coverage.best_iou[mask], s=8, alpha=0.5, color=colour,
                         label=f"{label} ({int(mask.sum())})", edgecolors="none")
    axes.axhline(coverage.matched_threshold, color="black", linestyle="--", linewidth=1,
                 label=f"matched_threshold {coverage.matched_threshold:g}")
    for limit in (math.sqrt(SMALL_AREA), math.sqrt(LARGE_AREA)):
        axes.axvline(limit, color="grey", linestyle=":", linewidth=1)
    if len(side) and side.min() > 0:
        axes.set_xscale("log")
        # Plain pixel numbers instead of powers of ten.
        low, high = side.min() / 1.2, side.max() * 1.2
        ticks = [t for t in (2, 4, 8, 16, 32, 64, 96, 128, 256, 512, 1024, 2048) if low <= t <= high]
        axes.set_xlim(low, high)
        axes.xaxis.set_major_locator(FixedLocator(ticks))
        axes.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
        axes.xaxis.set_minor_locator(NullLocator())
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("box size: sqrt(area) in pixels of the original image (dotted: 32, 96)")
    axes.set_ylabel("best IoU with any anchor")
    axes.set_title(title or f"Anchor coverage: {len(side)} boxes, {coverage.total_anchors} anchors")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path)
    return path
