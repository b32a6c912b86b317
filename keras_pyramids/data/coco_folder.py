"""COCO-format folders: find their splits, read and validate them, write them.

A COCO folder holds, per split, an annotations JSON in the standard COCO
detection format (``images``, ``annotations`` with ``bbox = [x, y, width,
height]`` in pixels, ``categories``) and a directory of JPEG/PNG images. COCO
category ids (which may have gaps, e.g. 1..90 for COCO's 80 classes) are mapped
to contiguous class ids ``0 .. C-1`` in order of category id;
``DetectionDataset.category_ids`` keeps the map back.

Splits are explicit: a folder's splits are those its layout names (:data:`LAYOUTS`,
found by :func:`find_splits`); a single ``annotations.json`` + ``images/``
folder has one split, ``"train"``. Asking for a split that does not exist is
an error that lists the ones that do. Files can also be given per split
(``annotation_file=`` + ``image_dir=``, or ``splits={name: {"annotation_file":
..., "image_dir": ...}}``).

Roboflow exports list the dataset itself as a category (id 0) that no
annotation uses and the real categories name as their ``supercategory``; such a
group is not a class and is left out.

Everything is validated in Python before the ``tf.data`` pipeline is built, so
bad input raises an error that names the file, annotation or category instead
of failing deep inside TensorFlow; every image is decoded fully once
(:mod:`keras_pyramids.data.image_check`, cached).

Training examples never contain crowd regions (``iscrowd = 1``: one box over
many objects); the evaluation ground truth
(``DetectionDataset.coco_ground_truth()``) is the annotation file's own
annotations, with their ids, ``area`` and ``iscrowd``, as pycocotools reads
them, built without decoding images.
"""

import dataclasses
import difflib
import json
import math
import os
import re

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_pyramids.data import coco_format, image_check
from keras_pyramids.data.dataset import DetectionDataset, ragged_rows, validate_boxes

ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"
ROBOFLOW_FILE = "_annotations.coco.json"
# The split of a folder with a single top-level annotations.json.
SINGLE_SPLIT = "train"
# How each layout places a split's annotation file and images, in search order.
LAYOUTS = (
    "<split>/annotations.json + <split>/images/",
    "annotations/instances_<split>.json + <split>/ (official COCO)",
    "<split>/_annotations.coco.json with the images beside it (Roboflow)",
    "<split>.json + <split>/",
    f"annotations.json + images/ (one split, '{SINGLE_SPLIT}')",
)
_INSTANCES = re.compile(r"^instances_(.+)\.json$")


@dataclasses.dataclass(frozen=True)
class SplitFiles:
    """Where one split of a COCO folder lives."""

    annotation_file: str
    image_dir: str
    layout: str


def find_splits(data_dir):
    """The splits of a COCO folder, by the layouts of :data:`LAYOUTS`.

    Returns:
        dict ``split name -> SplitFiles``.

    Raises:
        FileNotFoundError: ``data_dir`` is not a directory.
        ValueError: two layouts give the same split name (the message names
            both annotation files).
    """
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"COCO folder {data_dir} does not exist or is not a directory.")
    entries = sorted(os.listdir(data_dir))
    subdirs = [e for e in entries if os.path.isdir(os.path.join(data_dir, e))]
    found = []  # (split, SplitFiles)
    for name in subdirs:
        path = os.path.join(data_dir, name, ANNOTATION_FILE)
        if os.path.isfile(path):
            found.append((name, SplitFiles(path, os.path.join(data_dir, name, IMAGE_DIR), LAYOUTS[0])))
    official = os.path.join(data_dir, "annotations")
    if os.path.isdir(official):
        for entry in sorted(os.listdir(official)):
            match = _INSTANCES.match(entry)
            if match and os.path.isfile(os.path.join(official, entry)):
                split = match.group(1)
                found.append((split, SplitFiles(os.path.join(official, entry),
                                                os.path.join(data_dir, split), LAYOUTS[1])))
    for name in subdirs:
        path = os.path.join(data_dir, name, ROBOFLOW_FILE)
        if os.path.isfile(path):
            found.append((name, SplitFiles(path, os.path.join(data_dir, name), LAYOUTS[2])))
    for entry in entries:
        split, extension = os.path.splitext(entry)
        if (extension == ".json" and split not in ("annotations", IMAGE_DIR)
                and os.path.isfile(os.path.join(data_dir, entry)) and split in subdirs):
            found.append((split, SplitFiles(os.path.join(data_dir, entry),
                                            os.path.join(data_dir, split), LAYOUTS[3])))
    single = os.path.join(data_dir, ANNOTATION_FILE)
    if os.path.isfile(single):
        found.append((SINGLE_SPLIT, SplitFiles(single, os.path.join(data_dir, IMAGE_DIR), LAYOUTS[4])))
    splits = {}
    for split, files in found:
        if split in splits:
            raise ValueError(
                f"COCO folder {data_dir} has two annotation files for split {split!r}: "
                f"{splits[split].annotation_file} and {files.annotation_file}; remove one, or pass "
                "annotation_file= and image_dir= (--annotations/--images) explicitly."
            )
        splits[split] = files
    return splits


def _describe_splits(splits):
    return "; ".join(f"{name!r} ({files.annotation_file})" for name, files in splits.items())


def _explicit_splits(splits):
    """``{name: {"annotation_file", "image_dir"}}`` -> ``{name: SplitFiles}``."""
    if not isinstance(splits, dict) or not splits:
        raise ValueError("splits= must be a non-empty dict {split: {'annotation_file': ..., "
                         "'image_dir': ...}}.")
    resolved = {}
    for name, files in splits.items():
        keys = {"annotation_file", "image_dir"}
        if not isinstance(files, dict) or set(files) != keys:
            raise ValueError(f"splits[{name!r}] must be a dict with exactly the keys annotation_file "
                             f"and image_dir, got {files!r}.")
        resolved[str(name)] = SplitFiles(str(files["annotation_file"]), str(files["image_dir"]),
                                         "given explicitly")
    return resolved


def resolve_split(data_dir=None, split=None, annotation_file=None, image_dir=None, splits=None):
    """The split name and :class:`SplitFiles` that a :func:`load_coco_folder` call means.

    Exactly one of: ``data_dir`` (splits found by :func:`find_splits`),
    ``annotation_file`` + ``image_dir`` (one split, called ``split`` or
    ``"train"``), or ``splits`` (the given splits only).

    Raises:
        ValueError: a bad combination of arguments, or ``split`` is not one of
            the splits (the message lists them, with a close match if any);
            ``split=None`` picks the only split of a one-split folder.
        FileNotFoundError: ``data_dir`` does not exist, or matches no layout
            (the message lists the layouts tried).
    """
    given = [name for name, value in (("data_dir", data_dir), ("annotation_file", annotation_file),
                                      ("splits", splits)) if value is not None]
    if image_dir is not None and annotation_file is None:
        raise ValueError("image_dir= needs annotation_file= (the split's annotations JSON).")
    if len(given) != 1:
        raise ValueError("coco_folder needs exactly one of data_dir=, annotation_file= + image_dir= "
                         f"or splits=; got {', '.join(given) or 'none'}.")
    if annotation_file is not None:
        if image_dir is None:
            raise ValueError(f"annotation_file={annotation_file!r} needs image_dir= (the folder its "
                             "images' file_name entries are relative to).")
        available = {split or SINGLE_SPLIT: SplitFiles(annotation_file, image_dir, "given explicitly")}
        where = f"annotation file {annotation_file}"
    elif splits is not None:
        available = _explicit_splits(splits)
        where = "the given splits"
    else:
        available = find_splits(data_dir)
        if not available:
            tried = " | ".join(f"({i + 1}) {layout}" for i, layout in enumerate(LAYOUTS))
            raise FileNotFoundError(
                f"No COCO annotation file in {data_dir}: it matches none of the layouts "
                f"{tried}. Or pass annotation_file= and image_dir= (--annotations/--images)."
            )
        where = f"COCO folder {data_dir}"
    if split is None:
        if len(available) != 1:
            raise ValueError(f"{where} has splits {_describe_splits(available)}; choose one with split=.")
        split = next(iter(available))
    if split not in available:
        close = difflib.get_close_matches(split, list(available), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"No split {split!r} in {where}; its split(s): {_describe_splits(available)}.{hint}")
    files = available[split]
    if not os.path.isfile(files.annotation_file):
        raise FileNotFoundError(f"COCO annotation file not found: {files.annotation_file}")
    if not os.path.isdir(files.image_dir):
        raise FileNotFoundError(f"Image folder of split {split!r} not found: {files.image_dir} "
                                f"(layout: {files.layout}).")
    return split, files


def _require(mapping, key, what):
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{what} has no {key!r} field.")
    return mapping[key]


def _require_list(mapping, key, what):
    value = _require(mapping, key, what)
    if not isinstance(value, list):
        raise ValueError(f"{what}: {key!r} must be a list, got {type(value).__name__}.")
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_categories(coco, what):
    categories = _require_list(coco, "categories", what)
    if not categories:
        raise ValueError(f"{what}: the 'categories' list is empty; a detection dataset needs at least "
                         "one category {\"id\": ..., \"name\": ...}.")
    seen = set()
    for position, category in enumerate(categories):
        if not isinstance(category, dict) or "id" not in category:
            raise ValueError(f"{what}: category #{position} {category!r} has no 'id' field.")
        if not _is_int(category["id"]):
            raise ValueError(f"{what}: category #{position} has id {category['id']!r}; ids must be integers.")
        if category["id"] in seen:
            raise ValueError(f"{what}: category id {category['id']} appears twice in 'categories'.")
        seen.add(category["id"])
    # Roboflow exports put the dataset itself first as a category ({"id": 0,
    # "name": "cells", "supercategory": "none"}) that the real categories name
    # as their supercategory and no annotation uses: a group, not a class.
    annotations = coco.get("annotations") if isinstance(coco.get("annotations"), list) else []
    used = {a.get("category_id") for a in annotations if isinstance(a, dict)}
    groups = {c["id"] for c in categories if c["id"] not in used and "name" in c and any(
        other is not c and other.get("supercategory") == c["name"] for other in categories)}
    categories = sorted((c for c in categories if c["id"] not in groups), key=lambda c: c["id"])
    return [c["id"] for c in categories], [str(c.get("name", c["id"])) for c in categories]


def _area(annotation, bbox, where):
    if "area" not in annotation:
        return bbox[2] * bbox[3]
    area = annotation["area"]
    if not isinstance(area, (int, float)) or isinstance(area, bool) or not math.isfinite(area) or area < 0:
        raise ValueError(f"{where}: area must be a finite number >= 0, got {area!r}.")
    return area


def parse_coco_annotations(coco, image_dir, skip_crowd=True, check_images=True, what="COCO annotations"):
    """Validates a COCO detection dict and converts it to per-image arrays and ground truth.

    Args:
        coco: the parsed annotations JSON.
        image_dir: directory holding the images' ``file_name``s.
        skip_crowd: leave ``iscrowd=1`` annotations out of the training boxes
            (they are regions of many objects, not objects; they stay in the
            evaluation ground truth, where COCO ignores detections on them).
        check_images: decode every image fully once (cached), checking format,
            integrity and size (:func:`keras_pyramids.data.image_check.check_image_files`).
        what: the source, for messages (e.g. the annotation file's path).

    Returns:
        dict with ``paths``, ``image_ids``, ``boxes`` (list of float32
        ``[M_i, 4]`` normalised yxyx), ``classes`` (list of int32 ``[M_i]``),
        ``class_names``, ``category_ids`` and ``ground_truth`` (the COCO dict of
        :mod:`keras_pyramids.data.coco_format`: every annotation with its own
        ``id``, ``area``, ``iscrowd`` and category id).
    """
    category_ids, class_names = _parse_categories(coco, what)
    class_of_category = {cid: index for index, cid in enumerate(category_ids)}

    image_index = {}
    paths, image_ids, sizes, wheres, gt_images = [], [], [], [], []
    for image in _require_list(coco, "images", what):
        image_id = _require(image, "id", "an image entry")
        where = f"image id {image_id}"
        file_name = _require(image, "file_name", where)
        width, height = _require(image, "width", where), _require(image, "height", where)
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            raise ValueError(f"{where}: width and height must be positive integers, got {width!r}, {height!r}.")
        if not _is_int(image_id):
            raise ValueError(f"{where}: image ids must be integers.")
        if image_id in image_index:
            raise ValueError(f"{where} appears twice in 'images'.")
        path = os.path.join(image_dir, file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image file of {where} not found: {path}")
        image_index[image_id] = len(paths)
        paths.append(path)
        image_ids.append(image_id)
        sizes.append((width, height))
        wheres.append(where)
        gt_images.append({"id": image_id, "width": width, "height": height, "file_name": file_name})
    if check_images:
        image_check.check_image_files(paths, sizes, wheres, collection=image_dir)

    boxes = [[] for _ in paths]
    classes = [[] for _ in paths]
    gt_annotations, annotation_ids = [], set()
    for annotation in _require_list(coco, "annotations", what):
        annotation_id = annotation.get("id") if isinstance(annotation, dict) else None
        where = f"annotation id {annotation_id if annotation_id is not None else '?'}"
        image_id = _require(annotation, "image_id", where)
        if image_id not in image_index:
            raise ValueError(f"{where} refers to unknown image id {image_id}.")
        category_id = _require(annotation, "category_id", where)
        if category_id not in class_of_category:
            raise ValueError(
                f"{where} has unknown category id {category_id}; known category ids: {category_ids}."
            )
        if annotation_id is not None:
            if annotation_id in annotation_ids:
                raise ValueError(f"{where} appears twice in 'annotations'.")
            annotation_ids.add(annotation_id)
        index = image_index[image_id]
        width, height = sizes[index]
        bbox = _require(annotation, "bbox", where)
        box = coco_format.coco_bbox_to_normalised(bbox, width, height, where)
        iscrowd = annotation.get("iscrowd", 0)
        if iscrowd not in (0, 1):  # True and False compare equal to 1 and 0
            raise ValueError(f"{where}: iscrowd must be 0 or 1, got {iscrowd!r}.")
        gt_annotations.append({
            "id": annotation_id,
            "image_id": image_id,
            "category_id": category_id,
            "bbox": [float(v) for v in bbox],
            "area": float(_area(annotation, bbox, where)),
            "iscrowd": int(iscrowd),
        })
        if skip_crowd and iscrowd:
            continue
        boxes[index].append(box)
        classes[index].append(class_of_category[category_id])
    # Annotations without an id (pycocotools needs one) get ids after the largest.
    next_id = max((i for i in annotation_ids if _is_int(i)), default=0) + 1
    for annotation in gt_annotations:
        if annotation["id"] is None:
            annotation["id"] = next_id
            next_id += 1

    boxes = [
        validate_boxes(np.reshape(np.asarray(b, np.float64), (-1, 4)), where=f"image {paths[i]}")
        for i, b in enumerate(boxes)
    ]
    classes = [np.asarray(c, np.int32) for c in classes]
    ground_truth = {
        "images": gt_images,
        "annotations": gt_annotations,
        "categories": coco_format.coco_categories(category_ids, class_names),
    }
    return dict(
        paths=paths,
        image_ids=image_ids,
        boxes=boxes,
        classes=classes,
        class_names=class_names,
        category_ids=category_ids,
        ground_truth=ground_truth,
    )


def _decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.cast(image, tf.uint8)


def _copy_ground_truth(ground_truth):
    """A copy whose annotation dicts may be changed (COCOeval adds keys to them)."""
    return {
        "images": [dict(image) for image in ground_truth["images"]],
        "annotations": [dict(annotation) for annotation in ground_truth["annotations"]],
        "categories": [dict(category) for category in ground_truth["categories"]],
    }


def load_coco_folder(
    data_dir=None,
    split=None,
    annotation_file=None,
    image_dir=None,
    splits=None,
    skip_crowd=True,
    check_images=True,
):
    """Loads one split of a COCO-format folder as a :class:`DetectionDataset`.

    Args:
        data_dir: folder in one of the layouts of :data:`LAYOUTS`.
        split: the split to load; ``None`` for the only split of a one-split
            folder.
        annotation_file, image_dir: one split's files, given explicitly
            (instead of ``data_dir``).
        splits: ``{split: {"annotation_file": ..., "image_dir": ...}}``: the
            splits, given explicitly (instead of ``data_dir``).
        skip_crowd: leave crowd regions out of the training boxes (default;
            the evaluation ground truth always keeps them).
        check_images: decode every image fully once (cached) before use.

    Returns:
        :class:`DetectionDataset` whose ``coco_ground_truth()`` is the
        annotation file's own annotations.

    Raises:
        FileNotFoundError: missing folder, JSON or image file (named); a folder
            that matches no layout (the layouts are listed).
        ValueError: unknown split (the existing ones are listed); malformed
            JSON structure, category, bbox, area, unknown category or image id
            (naming the annotation); a bad image file (named).
    """
    split, files = resolve_split(data_dir, split, annotation_file, image_dir, splits)
    annotation_file, image_dir = files.annotation_file, files.image_dir
    try:
        with open(annotation_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{annotation_file} is not valid JSON: {error}") from None
    if not isinstance(coco, dict):
        raise ValueError(f"{annotation_file} must hold a JSON object with images, annotations and categories.")
    parsed = parse_coco_annotations(coco, image_dir, skip_crowd=skip_crowd, check_images=check_images,
                                    what=annotation_file)
    examples = tf.data.Dataset.from_tensor_slices(
        {
            "path": tf.constant(parsed["paths"], tf.string, shape=[len(parsed["paths"])]),
            "boxes": ragged_rows(parsed["boxes"], (4,), np.float32),
            "classes": ragged_rows(parsed["classes"], (), np.int32),
            "image_id": np.asarray(parsed["image_ids"], np.int64),
        }
    )
    examples = examples.map(
        lambda e: {
            "image": _decode(e["path"]),
            "boxes": e["boxes"],
            "classes": e["classes"],
            "image_id": e["image_id"],
        },
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ground_truth = parsed["ground_truth"]
    return DetectionDataset(
        examples=examples,
        class_names=parsed["class_names"],
        category_ids=parsed["category_ids"],
        num_examples=len(parsed["paths"]),
        ground_truth_fn=lambda: _copy_ground_truth(ground_truth),
        image_source=tuple((os.path.realpath(path), 0, 1) for path in parsed["paths"]),
        description=f"coco_folder split {split!r} ({annotation_file})",
        decoded_bytes=sum(3 * image["width"] * image["height"] for image in ground_truth["images"]),
    )


def to_coco_ground_truth(detection_dataset):
    """COCO ground-truth dict of a :class:`DetectionDataset`, for pycocotools.

    Same as ``detection_dataset.coco_ground_truth()``: the source's own
    annotations when it has them (no image decoded), else built from the
    examples (boxes ``[x, y, w, h]`` in pixels of the original images, category
    ids ``detection_dataset.category_ids``, the examples' ``image_id``).
    """
    return detection_dataset.coco_ground_truth()


def write_coco_folder(detection_dataset, out_dir, split=None, overwrite=False):
    """Exports a :class:`DetectionDataset` as a COCO folder.

    Writes ``annotations.json`` and one PNG per image,
    ``images/<image_id:012d>.png``, into ``out_dir`` (a one-split folder, its
    split is ``"train"``) or, with ``split``, into ``out_dir/<split>/`` (layout
    ``<split>/annotations.json + <split>/images/``, so several splits can share
    ``out_dir``).

    Args:
        overwrite: replace existing files; otherwise an existing annotations
            file or image file raises ``FileExistsError`` before it is touched.

    Returns:
        Path of the annotations file.
    """
    root = os.path.join(out_dir, split) if split else out_dir
    annotation_path = os.path.join(root, ANNOTATION_FILE)
    image_dir = os.path.join(root, IMAGE_DIR)
    if os.path.exists(annotation_path) and not overwrite:
        raise FileExistsError(f"{annotation_path} exists; pass overwrite=True to replace it.")
    os.makedirs(image_dir, exist_ok=True)

    def save(example, record):
        path = os.path.join(image_dir, record["file_name"])
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        Image.fromarray(example["image"]).save(path)

    coco = coco_format.ground_truth_from_examples(detection_dataset, on_image=save)
    with open(annotation_path, "w") as f:
        json.dump(coco, f)
    return annotation_path
