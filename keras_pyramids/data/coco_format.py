"""COCO-format boxes and ground-truth dicts: the one format evaluation reads.

Every data source describes its evaluation ground truth as a COCO detection
dict (what ``pycocotools.coco.COCO`` reads)::

    {"images": [{"id", "width", "height", "file_name"?}],
     "annotations": [{"id", "image_id", "category_id",
                      "bbox": [x, y, width, height] in pixels,
                      "area", "iscrowd": 0 | 1, "difficult"?: 0 | 1}],
     "categories": [{"id", "name"}]}

``area`` is the annotation's own area (on COCO the segmentation area, which
decides the small / medium / large buckets), ``iscrowd`` marks COCO crowd
regions (ignored by the COCO evaluation) and ``difficult`` marks Pascal VOC
objects the VOC evaluation ignores (pycocotools ignores the key).

Sources that know their annotations (COCO folders, TFDS, shapes) build this
dict from their metadata without decoding any image
(``DetectionDataset.coco_ground_truth``); :func:`ground_truth_from_examples` is
the fallback for hand-made datasets, and the writer of COCO folders.
"""

import math

import numpy as np

# Pixels a box may stick out of its image before it counts as malformed
# (annotation tools often round outwards).
PIXEL_TOLERANCE = 1.0


def coco_bbox_to_normalised(bbox, width, height, where, tolerance=PIXEL_TOLERANCE):
    """COCO ``[x, y, w, h]`` pixels -> normalised ``[ymin, xmin, ymax, xmax]``.

    Raises:
        ValueError: naming ``where`` if the bbox is not 4 finite numbers, has a
            non-positive width or height, or lies outside the ``width x height``
            image by more than ``tolerance`` pixels.
    """
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        or not all(math.isfinite(v) for v in bbox)
    ):
        raise ValueError(f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {bbox!r}.")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: bbox {bbox} has non-positive width or height.")
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        raise ValueError(
            f"{where}: bbox {bbox} lies outside its {width}x{height} (width x height) image."
        )
    box = [y / height, x / width, (y + h) / height, (x + w) / width]
    # Within the tolerance: clip to the image.
    return [min(max(v, 0.0), 1.0) for v in box]


def normalised_to_coco_bbox(box, width, height):
    """Normalised ``[ymin, xmin, ymax, xmax]`` -> COCO ``[x, y, w, h]`` pixels."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    return [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height]


def coco_categories(category_ids, class_names):
    """The ``categories`` list of a dataset's ``category_ids`` and ``class_names``."""
    return [{"id": int(cid), "name": str(name)} for cid, name in zip(category_ids, class_names)]


def ground_truth_from_arrays(image_ids, sizes, boxes, classes, category_ids, class_names,
                             difficult=None, file_names=None):
    """A COCO ground-truth dict from per-image arrays (no image needed).

    Args:
        image_ids: ``[N]`` image ids.
        sizes: ``[N]`` ``(height, width)`` in pixels.
        boxes: per image, normalised ``[M_i, 4]`` ``[ymin, xmin, ymax, xmax]``.
        classes: per image, ``[M_i]`` contiguous class ids.
        category_ids, class_names: the dataset's category id and name per class id.
        difficult: optional per-image ``[M_i]`` flags (Pascal VOC "difficult").
        file_names: optional ``[N]`` file names.

    Returns:
        COCO dict (module docstring); annotation ids count from 1 in image order,
        ``area`` is the box area and ``iscrowd`` 0.
    """
    images, annotations = [], []
    for index, (image_id, (height, width)) in enumerate(zip(image_ids, sizes)):
        record = {"id": int(image_id), "width": int(width), "height": int(height)}
        if file_names is not None:
            record["file_name"] = str(file_names[index])
        images.append(record)
        flags = difficult[index] if difficult is not None else np.zeros(len(classes[index]), bool)
        for box, class_id, flag in zip(boxes[index], classes[index], flags):
            bbox = normalised_to_coco_bbox(box, width, height)
            annotation = {
                "id": len(annotations) + 1,
                "image_id": int(image_id),
                "category_id": int(category_ids[int(class_id)]),
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
            if difficult is not None:
                annotation["difficult"] = int(bool(flag))
            annotations.append(annotation)
    return {
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(category_ids, class_names),
    }


def ground_truth_from_examples(detection_dataset, on_image=None):
    """Iterates (and so decodes) a dataset once, building its COCO ground truth.

    The fallback for datasets that carry no ground truth of their own, and the
    writer of COCO folders: ``on_image(example_numpy, image_record)`` is called
    per image (to write the image file) and may change ``image_record["file_name"]``
    (default ``<image_id:012d>.png``).
    """
    image_ids, sizes, boxes, classes, file_names = [], [], [], [], []
    for example in detection_dataset.examples.as_numpy_iterator():
        height, width = example["image"].shape[:2]
        record = {
            "id": int(example["image_id"]),
            "width": int(width),
            "height": int(height),
            "file_name": f"{int(example['image_id']):012d}.png",
        }
        if on_image is not None:
            on_image(example, record)
        image_ids.append(record["id"])
        sizes.append((height, width))
        boxes.append(example["boxes"])
        classes.append(example["classes"])
        file_names.append(record["file_name"])
    return ground_truth_from_arrays(
        image_ids, sizes, boxes, classes, detection_dataset.category_ids,
        detection_dataset.class_names, file_names=file_names,
    )
