"""The Pascal VOC detection metric: per-class AP at IoU 0.5, and their mean (mAP).

Everingham et al., "The Pascal Visual Object Classes (VOC) Challenge" (IJCV
2010), section 4.2, and the devkit's ``VOCevaldet.m``:

- per class, detections over all images are sorted by score (ties keep their
  order); each is matched to the ground-truth box of its image and class with
  the highest IoU; at IoU >= 0.5 it is a true positive if that box is not yet
  matched, a false positive (duplicate) if it is, and *ignored* (neither) if
  the box is "difficult"; below 0.5 it is a false positive;
- recall counts only non-difficult boxes;
- VOC2007 AP (:data:`ELEVEN_POINT`): the mean over recall thresholds
  ``t = 0, 0.1, ..., 1`` of the highest precision at recall ``>= t`` (0 if
  none), eq. (1) of the paper;
- VOC2010+ AP (:data:`AREA`): the area under the precision / recall curve after
  making precision monotonically decreasing (the devkit from VOC2010 on).

Boxes are continuous pixel coordinates (the devkit's ``+1`` pixel widths are
taken care of when VOC boxes are loaded, see
:mod:`keras_pyramids.data.tfds_datasets`). COCO crowd regions, when this metric
runs on COCO-format data, count as difficult. The recall thresholds are
compared exactly (``10 * TP >= k * positives``), where float-stepped
thresholds (MATLAB ``0:0.1:1``, ``np.arange``) can miss a recall of exactly
0.3, 0.6 or 0.7 by one rounding step.
"""

import collections

import numpy as np

ELEVEN_POINT = "11point"
AREA = "area"
INTERPOLATIONS = (ELEVEN_POINT, AREA)
IOU_THRESHOLD = 0.5


def average_precision(true_positives, false_positives, num_positives, interpolation):
    """AP of one class from its score-sorted detections.

    Args:
        true_positives, false_positives: ``[D]`` 0/1 per detection in
            decreasing score order (an ignored detection has both 0).
        num_positives: non-difficult ground-truth boxes of the class (> 0).
        interpolation: :data:`ELEVEN_POINT` or :data:`AREA`.
    """
    tp = np.cumsum(np.asarray(true_positives, np.int64))
    fp = np.cumsum(np.asarray(false_positives, np.int64))
    counted = (np.asarray(true_positives) + np.asarray(false_positives)) > 0
    # Ignored detections add no point to the curve.
    tp, fp = tp[counted], fp[counted]
    recall = tp / num_positives
    precision = tp / np.maximum(tp + fp, 1)
    if interpolation == ELEVEN_POINT:
        total = 0.0
        for k in range(11):
            reached = 10 * tp >= k * num_positives  # recall >= k / 10, exactly
            total += precision[reached].max() if np.any(reached) else 0.0
        return total / 11.0
    if interpolation == AREA:
        recall = np.concatenate([[0.0], recall, [1.0]])
        precision = np.concatenate([[0.0], precision, [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
    raise ValueError(f"Unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}.")


def _iou(box, boxes):
    """IoU of one ``[x, y, w, h]`` box with ``[N, 4]`` boxes (continuous pixels)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def match_detections(detections, ground_truth, iou_threshold=IOU_THRESHOLD):
    """VOC matching of one class.

    Args:
        detections: list of ``(image_id, [x, y, w, h], score)``.
        ground_truth: ``{image_id: (boxes [N, 4] xywh, difficult [N] bool)}``.

    Returns:
        ``(true_positives, false_positives)`` 0/1 arrays in decreasing score
        order (stable for equal scores).
    """
    order = np.argsort([-score for _, _, score in detections], kind="stable")
    matched = {image_id: np.zeros(len(boxes), bool) for image_id, (boxes, _) in ground_truth.items()}
    true_positives = np.zeros(len(detections), np.int64)
    false_positives = np.zeros(len(detections), np.int64)
    for rank, index in enumerate(order):
        image_id, box, _ = detections[index]
        boxes, difficult = ground_truth.get(image_id, (np.zeros((0, 4)), np.zeros(0, bool)))
        overlaps = _iou(np.asarray(box, np.float64), boxes) if len(boxes) else np.zeros(0)
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best < 0 or overlaps[best] < iou_threshold:
            false_positives[rank] = 1
        elif difficult[best]:
            continue  # ignored
        elif matched[image_id][best]:
            false_positives[rank] = 1
        else:
            true_positives[rank] = 1
            matched[image_id][best] = True
    return true_positives, false_positives


def voc_evaluate(ground_truth, results, image_ids=None, interpolation=ELEVEN_POINT,
                 iou_threshold=IOU_THRESHOLD, verbose=False):
    """Pascal VOC AP per class and their mean.

    Args:
        ground_truth: COCO-format ground-truth dict
            (:mod:`keras_pyramids.data.coco_format`); annotations with
            ``difficult = 1`` (or ``iscrowd = 1``) are ignored.
        results: list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
            "score"}``.
        image_ids: evaluate only these images (default: every ground-truth image).
        interpolation: :data:`ELEVEN_POINT` (VOC2007) or :data:`AREA` (VOC2010+).
        iou_threshold: 0.5 in VOC.
        verbose: unused (the protocols' common signature).

    Returns:
        ``{"mAP": mean over classes with ground truth, "AP_per_class": {name:
        AP}}``; a class without non-difficult ground truth has AP -1 (as
        pycocotools' "undefined") and is left out of the mean.

    Raises:
        ValueError: a result refers to an image or category the ground truth
            does not have.
    """
    del verbose
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}.")
    known_images = {image["id"] for image in ground_truth["images"]}
    selected = known_images if image_ids is None else {int(i) for i in image_ids}
    categories = ground_truth["categories"]
    known_categories = {category["id"] for category in categories}
    boxes = collections.defaultdict(lambda: collections.defaultdict(list))
    for annotation in ground_truth.get("annotations", []):
        if annotation["image_id"] in selected:
            ignore = bool(annotation.get("difficult", 0) or annotation.get("iscrowd", 0))
            boxes[annotation["category_id"]][annotation["image_id"]].append((annotation["bbox"], ignore))
    detections = collections.defaultdict(list)
    for result in results:
        if result["image_id"] not in known_images:
            raise ValueError(f"Result for image id {result['image_id']} not in the ground truth.")
        if result["category_id"] not in known_categories:
            raise ValueError(f"Result with category id {result['category_id']} not in the ground truth.")
        if result["image_id"] in selected:
            detections[result["category_id"]].append(
                (result["image_id"], result["bbox"], float(result["score"])))
    per_class = {}
    for category in categories:
        per_image = {
            image_id: (np.asarray([b for b, _ in entries], np.float64).reshape(-1, 4),
                       np.asarray([d for _, d in entries], bool))
            for image_id, entries in boxes[category["id"]].items()
        }
        num_positives = sum(int(np.sum(~difficult)) for _, difficult in per_image.values())
        name = str(category.get("name", category["id"]))
        if name in per_class:
            name = f"{name} (id {category['id']})"
        if num_positives == 0:
            per_class[name] = -1.0
            continue
        tp, fp = match_detections(detections[category["id"]], per_image, iou_threshold)
        per_class[name] = float(average_precision(tp, fp, num_positives, interpolation))
    defined = [ap for ap in per_class.values() if ap >= 0]
    return {"mAP": float(np.mean(defined)) if defined else -1.0, "AP_per_class": per_class}
