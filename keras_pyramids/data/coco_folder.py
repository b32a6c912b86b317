"""COCO-format folders: read, write, and COCO ground truth for evaluation.

A COCO folder is an annotations JSON in the standard COCO detection format
(``images``, ``annotations`` with ``bbox = [x, y, width, height]`` in pixels,
``categories``) and a directory of JPEG/PNG images. COCO category ids (which
may have gaps, e.g. 1..90 for COCO's 80 classes) are mapped to contiguous class
ids ``0 .. C-1`` in order of category id; ``DetectionDataset.category_ids``
keeps the map back.

Everything is validated in Python before the ``tf.data`` pipeline is built, so
bad input raises an error that names the file, annotation or category instead
of failing deep inside TensorFlow.

Folder layouts found from ``data_dir`` (first match wins):

1. ``data_dir/<split>/annotations.json`` + ``data_dir/<split>/images/``
2. ``data_dir/annotations/instances_<split>.json`` + ``data_dir/<split>/``
   (the official COCO layout, e.g. ``split="val2017"``)
3. ``data_dir/annotations.json`` + ``data_dir/images/`` (what
   :func:`write_coco_folder` writes)
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from keras_pyramids.data.dataset import DetectionDataset, ragged_rows, validate_boxes

ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"
# Pixels a box may stick out of its image before it counts as malformed
# (annotation tools often round outwards).
PIXEL_TOLERANCE = 1.0
_IMAGE_FORMATS = ("JPEG", "PNG")


def _resolve_paths(data_dir, split, annotation_file, image_dir):
    """Finds the annotations JSON and the image directory (see module docstring)."""
    if annotation_file is not None or image_dir is not None:
        if annotation_file is None or image_dir is None:
            if data_dir is None:
                raise ValueError("Pass both annotation_file= and image_dir=, or data_dir=.")
            annotation_file = annotation_file or os.path.join(data_dir, ANNOTATION_FILE)
            image_dir = image_dir or os.path.join(data_dir, IMAGE_DIR)
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
        return annotation_file, image_dir
    if data_dir is None:
        raise ValueError("coco_folder needs data_dir= (or annotation_file= and image_dir=).")
    candidates = []
    if split:
        candidates.append(
            (os.path.join(data_dir, split, ANNOTATION_FILE), os.path.join(data_dir, split, IMAGE_DIR))
        )
        candidates.append(
            (
                os.path.join(data_dir, "annotations", f"instances_{split}.json"),
                os.path.join(data_dir, split),
            )
        )
    candidates.append((os.path.join(data_dir, ANNOTATION_FILE), os.path.join(data_dir, IMAGE_DIR)))
    for json_path, images_path in candidates:
        if os.path.isfile(json_path):
            return json_path, images_path
    tried = ", ".join(path for path, _ in candidates)
    raise FileNotFoundError(f"No COCO annotation file in {data_dir}; looked for: {tried}")


def _require(mapping, key, what):
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{what} has no {key!r} field.")
    return mapping[key]


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


def _check_image_file(path, width, height, where):
    """Checks that ``path`` is a JPEG/PNG of the size the JSON states (reads
    only the header)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, size = image.format, image.size
    except UnidentifiedImageError:
        raise ValueError(f"{where}: {path} is not a readable image.") from None
    if fmt not in _IMAGE_FORMATS:
        raise ValueError(f"{where}: {path} is {fmt}; only JPEG and PNG are supported.")
    if size != (width, height):
        raise ValueError(
            f"{where}: {path} is {size[0]}x{size[1]} but the annotations say {width}x{height}."
        )


def parse_coco_annotations(coco, image_dir, skip_crowd=True, check_images=True):
    """Validates a COCO detection dict and converts it to per-image arrays.

    Args:
        coco: the parsed annotations JSON.
        image_dir: directory holding the images' ``file_name``s.
        skip_crowd: drop ``iscrowd=1`` annotations (they are regions of many
            objects, not training boxes).
        check_images: open every image header to check format and size.

    Returns:
        dict with ``paths``, ``image_ids``, ``boxes`` (list of float32
        ``[M_i, 4]`` normalised yxyx), ``classes`` (list of int32 ``[M_i]``),
        ``class_names`` and ``category_ids``.
    """
    categories = sorted(_require(coco, "categories", "COCO annotations"), key=lambda c: c["id"])
    category_ids = [int(_require(c, "id", "a category")) for c in categories]
    class_names = [str(c.get("name", c["id"])) for c in categories]
    class_of_category = {cid: index for index, cid in enumerate(category_ids)}

    images = _require(coco, "images", "COCO annotations")
    image_index = {}
    paths, image_ids, sizes = [], [], []
    for image in images:
        image_id = _require(image, "id", "an image entry")
        where = f"image id {image_id}"
        file_name = _require(image, "file_name", where)
        width, height = int(_require(image, "width", where)), int(_require(image, "height", where))
        if image_id in image_index:
            raise ValueError(f"{where} appears twice in 'images'.")
        path = os.path.join(image_dir, file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image file of {where} not found: {path}")
        if check_images:
            _check_image_file(path, width, height, where)
        image_index[image_id] = len(paths)
        paths.append(path)
        image_ids.append(int(image_id))
        sizes.append((width, height))

    boxes = [[] for _ in paths]
    classes = [[] for _ in paths]
    for annotation in _require(coco, "annotations", "COCO annotations"):
        annotation_id = annotation.get("id", "?")
        where = f"annotation id {annotation_id}"
        image_id = _require(annotation, "image_id", where)
        if image_id not in image_index:
            raise ValueError(f"{where} refers to unknown image id {image_id}.")
        category_id = _require(annotation, "category_id", where)
        if category_id not in class_of_category:
            raise ValueError(
                f"{where} has unknown category id {category_id}; known category ids: {category_ids}."
            )
        index = image_index[image_id]
        width, height = sizes[index]
        box = coco_bbox_to_normalised(_require(annotation, "bbox", where), width, height, where)
        if skip_crowd and annotation.get("iscrowd", 0):
            continue
        boxes[index].append(box)
        classes[index].append(class_of_category[category_id])

    boxes = [
        validate_boxes(np.reshape(np.asarray(b, np.float64), (-1, 4)), where=f"image {paths[i]}")
        for i, b in enumerate(boxes)
    ]
    classes = [np.asarray(c, np.int32) for c in classes]
    return dict(
        paths=paths,
        image_ids=image_ids,
        boxes=boxes,
        classes=classes,
        class_names=class_names,
        category_ids=category_ids,
    )


def _decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.cast(image, tf.uint8)


def load_coco_folder(
    data_dir=None,
    split=None,
    annotation_file=None,
    image_dir=None,
    skip_crowd=True,
    check_images=True,
):
    """Loads a COCO-format folder as a :class:`DetectionDataset`.

    Args:
        data_dir: folder in one of the layouts of the module docstring.
        split: selects the layout's split subfolder / annotation file, if any.
        annotation_file, image_dir: explicit paths (override ``data_dir``).
        skip_crowd: drop ``iscrowd=1`` annotations.
        check_images: read every image header up front (format and size).

    Raises:
        FileNotFoundError: missing JSON or image file (named).
        ValueError: malformed JSON structure, bbox, unknown category or image id
            (naming the annotation).
    """
    annotation_file, image_dir = _resolve_paths(data_dir, split, annotation_file, image_dir)
    try:
        with open(annotation_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{annotation_file} is not valid JSON: {error}") from None
    parsed = parse_coco_annotations(coco, image_dir, skip_crowd=skip_crowd, check_images=check_images)
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
    return DetectionDataset(
        examples=examples,
        class_names=parsed["class_names"],
        category_ids=parsed["category_ids"],
        num_examples=len(parsed["paths"]),
    )


def _normalised_to_coco_bbox(box, width, height):
    """Normalised ``[ymin, xmin, ymax, xmax]`` -> COCO ``[x, y, w, h]`` pixels."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    return [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height]


def _coco_records(detection_dataset, on_image=None):
    """Iterates the dataset once, building COCO ``images`` and ``annotations``.

    ``on_image(example_numpy, image_record)`` is called per image (used to
    write the image file) and may set ``image_record["file_name"]``.
    """
    images, annotations = [], []
    category_ids = detection_dataset.category_ids
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
        images.append(record)
        for box, class_id in zip(example["boxes"], example["classes"]):
            bbox = _normalised_to_coco_bbox(box, width, height)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record["id"],
                    "category_id": int(category_ids[int(class_id)]),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": int(cid), "name": name}
        for cid, name in zip(category_ids, detection_dataset.class_names)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco_ground_truth(detection_dataset):
    """COCO ground-truth dict of a :class:`DetectionDataset`, for pycocotools.

    Boxes are ``[x, y, w, h]`` in pixels of the original images; category ids
    are ``detection_dataset.category_ids``; image ids are the examples'
    ``image_id``s. Iterates (and decodes) the whole dataset once.
    """
    return _coco_records(detection_dataset)


def write_coco_folder(detection_dataset, out_dir, overwrite=False):
    """Exports a :class:`DetectionDataset` as a COCO folder (layout 3).

    Writes ``out_dir/annotations.json`` and one PNG per image,
    ``out_dir/images/<image_id:012d>.png``.

    Args:
        overwrite: replace existing files; otherwise an existing annotations
            file or image file raises ``FileExistsError`` before it is touched.

    Returns:
        Path of the annotations file.
    """
    from PIL import Image

    annotation_path = os.path.join(out_dir, ANNOTATION_FILE)
    image_dir = os.path.join(out_dir, IMAGE_DIR)
    if os.path.exists(annotation_path) and not overwrite:
        raise FileExistsError(f"{annotation_path} exists; pass overwrite=True to replace it.")
    os.makedirs(image_dir, exist_ok=True)

    def save(example, record):
        path = os.path.join(image_dir, record["file_name"])
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        Image.fromarray(example["image"]).save(path)

    coco = _coco_records(detection_dataset, on_image=save)
    with open(annotation_path, "w") as f:
        json.dump(coco, f)
    return annotation_path
