"""Anchors fitted to a dataset's boxes: scales and aspect ratios that the matcher can use.

A single-shot detector learns a box through the anchors whose IoU with it
reaches the model's ``matched_threshold`` (:mod:`keras_pyramids.anchor_coverage`).
Anchors made for COCO at 300 pixels (PPN's smallest is 0.15 x the image side)
leave small objects of another dataset with no anchor above the threshold: a
12-pixel box on a 256-pixel image never reaches IoU 0.5 with a 38-pixel anchor.
:func:`fit_anchors` chooses the settings of the model's own anchor rule that
maximise the share of training boxes with an anchor at IoU >= the threshold
(ties: the higher mean best IoU), as YOLOv5's "autoanchor" does for its
anchors, and never returns settings that cover fewer boxes than the ones it
started from:

- SSD / PPN rule (:class:`~keras_pyramids.ops.anchors.SSDAnchorGenerator`):
  ``min_scale`` and ``max_scale`` of SSD's linear rule (eq. 4) on a log grid
  (with explicit per-level ``scales``, as M2Det's, one factor on all of
  them), then the aspect ratios, then the scales again;
- FPN rule (:class:`~keras_pyramids.ops.anchors.FPNAnchorGenerator`):
  ``anchor_size`` (the base side in strides; with explicit ``sizes``, one factor
  on them), then the aspect ratios, then the size again.

The number of aspect ratios (and so of anchors per location, the head's
output channels) is kept. Aspect ratios are chosen greedily from a grid of
width / height values between 1/4 and 4, each time the one that adds the
most covered boxes. The box-anchor IoUs are exact: for every level only the
anchors at the location nearest to the box's centre are compared (for
anchors of one size on a grid, the nearest centre gives the highest IoU,
since the overlap falls with the centre offset along each axis separately),
so a candidate costs ``boxes x levels x anchors per location`` IoUs.

:func:`fit_model_anchors` fits a built model's anchors to a dataset's
training boxes; ``keras-pyramids train --fit-anchors`` builds the model with
the result, and the model stores its anchor generator in its config, so the
``.keras`` file, an export and the evaluation use the fitted anchors.
"""

import dataclasses

import numpy as np

from keras_pyramids.anchor_coverage import matching_settings
from keras_pyramids.ops.anchors import FPNAnchorGenerator, SSDAnchorGenerator

# Width / height values the aspect ratios are chosen from (1/4 .. 4, 17 steps in log space).
RATIO_GRID = tuple(float(r) for r in np.round(np.geomspace(0.25, 4.0, 17), 4))
# SSD scales (anchor side / shorter image side) and FPN base sides (in strides) searched.
SCALE_GRID = tuple(float(s) for s in np.geomspace(0.02, 1.0, 40))
ANCHOR_SIZE_GRID = tuple(float(s) for s in np.geomspace(0.5, 16.0, 31))
FACTOR_GRID = tuple(float(f) for f in np.geomspace(0.1, 4.0, 33))
# Boxes the search looks at, at most (a fixed random sample of bigger sets: COCO's 860k would take
# an hour; 10k give the shares to within about one percentage point).
MAX_BOXES = 10000


def dataset_boxes(dataset):
    """The boxes a detector is trained on, from the dataset's COCO ground truth (no image decoded).

    Crowd regions are left out (training never sees them), and so are boxes of zero area.

    Returns:
        float32 ``[M, 4]`` normalised ``[ymin, xmin, ymax, xmax]`` of every box of every image.
    """
    ground_truth = dataset.coco_ground_truth()
    sizes = {image["id"]: (float(image["height"]), float(image["width"])) for image in ground_truth["images"]}
    boxes = []
    for annotation in ground_truth["annotations"]:
        if annotation.get("iscrowd", 0):
            continue
        x, y, w, h = (float(v) for v in annotation["bbox"])
        height, width = sizes[annotation["image_id"]]
        if w > 0 and h > 0:
            boxes.append([y / height, x / width, (y + h) / height, (x + w) / width])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _iou(boxes, anchors):
    """IoU of ``boxes [M, 4]`` with ``anchors [M, A, 4]`` (each box with its own anchors) -> ``[M, A]``."""
    boxes = boxes[:, None, :]
    inter_h = np.clip(np.minimum(boxes[..., 2], anchors[..., 2]) - np.maximum(boxes[..., 0], anchors[..., 0]), 0, None)
    inter_w = np.clip(np.minimum(boxes[..., 3], anchors[..., 3]) - np.maximum(boxes[..., 1], anchors[..., 1]), 0, None)
    intersection = inter_h * inter_w
    area_boxes = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    area_anchors = (anchors[..., 2] - anchors[..., 0]) * (anchors[..., 3] - anchors[..., 1])
    return intersection / np.maximum(area_boxes + area_anchors - intersection, 1e-12)


def _nearest(centres, values):
    """Index of the nearest entry of the sorted ``centres`` for each of ``values``."""
    index = np.clip(np.searchsorted(centres, values), 1, max(len(centres) - 1, 1))
    if len(centres) == 1:
        return np.zeros(len(values), np.int64)
    left = centres[index - 1]
    return np.where(np.abs(values - left) <= np.abs(centres[index] - values), index - 1, index)


def best_anchor_iou(boxes, generator, feature_shapes, image_size):
    """Best IoU of each box with any anchor of ``generator`` on a pyramid.

    Args:
        boxes: ``[M, 4]`` normalised yxyx.
        generator: an anchor generator (``generator(feature_shapes, image_size) -> [N, 4]``,
            ``anchors_per_location(levels)``; anchors level by level, row-major, the
            ``A`` anchors of a location innermost and sharing its centre).
        feature_shapes: ``[(h, w), ...]`` of the levels.
        image_size: ``(H, W)``.

    Returns:
        float64 ``[M]``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    anchors = np.asarray(generator(feature_shapes, image_size), np.float64)
    counts = generator.anchors_per_location(len(feature_shapes))
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2
    best = np.zeros(len(boxes))
    start = 0
    for (h, w), count in zip(feature_shapes, counts):
        grid = anchors[start:start + h * w * count].reshape(h, w, count, 4)
        start += h * w * count
        rows = _nearest((grid[:, 0, 0, 0] + grid[:, 0, 0, 2]) / 2, centre_y)
        cols = _nearest((grid[0, :, 0, 1] + grid[0, :, 0, 3]) / 2, centre_x)
        best = np.maximum(best, _iou(boxes, grid[rows, cols]).max(axis=1))
    return best


@dataclasses.dataclass(frozen=True)
class Coverage:
    """How well one set of anchors covers a set of boxes."""

    matched: float  # share of boxes with an anchor at IoU >= the threshold
    mean_best_iou: float

    @property
    def key(self):
        return (round(self.matched, 9), self.mean_best_iou)


def coverage_of(boxes, generator, feature_shapes, image_size, threshold):
    """:class:`Coverage` of ``boxes`` by the anchors of ``generator`` at IoU ``threshold``."""
    best = best_anchor_iou(boxes, generator, feature_shapes, image_size)
    if not len(best):
        return Coverage(0.0, 0.0)
    return Coverage(float((best >= threshold).mean()), float(best.mean()))


@dataclasses.dataclass
class AnchorFit:
    """The result of :func:`fit_anchors`.

    Attributes:
        generator: the fitted anchor generator (``initial`` when nothing covered more boxes).
        initial: the generator the fit started from.
        before, after: :class:`Coverage` of the boxes by ``initial`` and ``generator``.
        threshold: the IoU a box needs with an anchor to count as covered.
        num_boxes: boxes the fit looked at.
        image_size: ``(H, W)`` of the model.
    """

    generator: object
    initial: object
    before: Coverage
    after: Coverage
    threshold: float
    num_boxes: int
    image_size: tuple

    @property
    def changed(self):
        return self.generator != self.initial

    def settings(self):
        """The fitted generator's settings that differ from the initial one's."""
        old, new = self.initial.get_config(), self.generator.get_config()
        return {key: value for key, value in new.items() if old.get(key) != value}

    def to_dict(self):
        return {
            "anchor_generator": type(self.generator).__name__,
            "fitted": self.generator.get_config(),
            "initial": self.initial.get_config(),
            "threshold": self.threshold,
            "boxes": self.num_boxes,
            "image_size": list(self.image_size),
            "before": dataclasses.asdict(self.before),
            "after": dataclasses.asdict(self.after),
        }

    def format(self):
        """Coverage before and after, and the settings that changed, as printed by ``train --fit-anchors``."""
        lines = [
            f"Anchor fit on {self.num_boxes} boxes at {self.image_size[0]}x{self.image_size[1]} "
            f"(a box is covered by an anchor at IoU >= {self.threshold:g}):",
            f"  model's anchors: {self.before.matched:.1%} covered, mean best IoU {self.before.mean_best_iou:.3f}",
            f"  fitted anchors:  {self.after.matched:.1%} covered, mean best IoU {self.after.mean_best_iou:.3f}",
        ]
        if self.changed:
            changes = ", ".join(f"{key}={_short(value)}" for key, value in self.settings().items())
            lines.append(f"  fitted settings: {changes}")
        else:
            lines.append("  the model's anchors cover the boxes best; kept")
        return "\n".join(lines)


def _short(value):
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)


def _best(candidates, score):
    """The candidate with the highest ``score(candidate).key`` (the first one on ties)."""
    best, best_key = None, None
    for candidate in candidates:
        key = score(candidate).key
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    return best


def _ssd_scale_candidates(generator):
    if generator.scales is not None:
        # Explicit per-level scales (M2Det's ranges): one factor on all of them.
        return [dataclasses.replace(generator, scales=tuple(min(s * f, 1.0) for s in generator.scales))
                for f in FACTOR_GRID]
    return [dataclasses.replace(generator, min_scale=lo, max_scale=hi)
            for lo in SCALE_GRID for hi in SCALE_GRID if hi >= lo]


def _fpn_scale_candidates(generator):
    if generator.sizes is not None:
        return [dataclasses.replace(generator, sizes=tuple(s * f for s in generator.sizes)) for f in FACTOR_GRID]
    return [dataclasses.replace(generator, anchor_size=size) for size in ANCHOR_SIZE_GRID]


def _fit_ratios(generator, score):
    """Greedy choice of ``len(generator.aspect_ratios)`` aspect ratios from :data:`RATIO_GRID`."""
    count = len(generator.aspect_ratios)
    chosen = []
    for _ in range(count):
        options = [r for r in RATIO_GRID if r not in chosen]
        pick = _best(options, lambda r: score(dataclasses.replace(
            generator, aspect_ratios=tuple(sorted(chosen + [r], key=lambda v: abs(np.log(v)))))))
        chosen.append(pick)
    # Square first, then by distance from square, as the papers list them.
    return dataclasses.replace(generator, aspect_ratios=tuple(sorted(chosen, key=lambda v: (abs(np.log(v)), v))))


def fit_anchors(boxes, generator, feature_shapes, image_size, threshold=0.5, max_boxes=MAX_BOXES):
    """Fits the anchor settings of ``generator``'s rule to ``boxes`` (see the module docstring).

    Args:
        boxes: ``[M, 4]`` normalised yxyx training boxes (:func:`dataset_boxes`).
        generator: :class:`SSDAnchorGenerator` or :class:`FPNAnchorGenerator`, the start.
        feature_shapes: ``[(h, w), ...]`` of the model's pyramid levels.
        image_size: ``(H, W)`` of the model's input.
        threshold: the matcher's ``matched_threshold``.
        max_boxes: fit to a fixed random sample of this many boxes when there are more.

    Returns:
        :class:`AnchorFit`; its ``after`` coverage is never below ``before``.

    Raises:
        ValueError: no boxes, or a generator of another rule.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        raise ValueError("Anchor fitting needs training boxes; the dataset has none.")
    if len(boxes) > max_boxes:
        boxes = boxes[np.random.default_rng(0).choice(len(boxes), max_boxes, replace=False)]
    if isinstance(generator, SSDAnchorGenerator):
        scale_candidates = _ssd_scale_candidates
    elif isinstance(generator, FPNAnchorGenerator):
        scale_candidates = _fpn_scale_candidates
    else:
        raise ValueError(f"Anchors of {type(generator).__name__} cannot be fitted; fitting knows "
                         "SSDAnchorGenerator (SSD / PPN / M2Det) and FPNAnchorGenerator (RetinaNet).")
    image_size = tuple(int(d) for d in image_size)

    def score(candidate):
        return coverage_of(boxes, candidate, feature_shapes, image_size, threshold)

    fitted = _best(scale_candidates(generator), score)
    fitted = _fit_ratios(fitted, score)
    fitted = _best(scale_candidates(fitted), score)
    before, after = score(generator), score(fitted)
    if after.key <= before.key:
        fitted, after = generator, before
    return AnchorFit(fitted, generator, before, after, float(threshold), int(len(boxes)), image_size)


def fit_model_anchors(model, dataset):
    """Fits a built single-shot detector's anchors to the training boxes of ``dataset``.

    The model's own anchor generator is the start and its label encoder's
    ``matched_threshold`` the IoU to reach; build the model again with
    ``anchor_config=fit.generator`` to use the result.

    Returns:
        :class:`AnchorFit`.
    """
    generator = getattr(model, "anchor_generator", None)
    if generator is None or not hasattr(model, "label_encoder"):
        raise ValueError(f"{model.name} has no single-shot anchor generator to fit.")
    _, settings, _ = matching_settings(model)
    return fit_anchors(dataset_boxes(dataset), generator, model.feature_shapes, model.image_size,
                       settings["matched_threshold"])
