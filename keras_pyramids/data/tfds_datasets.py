"""TensorFlow Datasets sources: ``coco/2017`` and ``voc/2007``.

TFDS already stores boxes as normalised ``[ymin, xmin, ymax, xmax]``
(``BBoxFeature``) and labels as contiguous ids, so conversion to source
examples is a ``tf.data`` map. Nothing is downloaded unless the caller passes
``download=True``; a missing dataset raises ``FileNotFoundError`` saying how to
get it.

Evaluation ground truth (``DetectionDataset.coco_ground_truth()``) is read
from the same records with the image left encoded
(``tfds.decode.SkipDecoding``; the size comes from the JPEG / PNG header): for
COCO every object with its annotation ``id``, ``area`` and ``is_crowd`` (TFDS
stores COCO's areas as integers, truncated), for VOC every object with its
``is_difficult`` flag. Training examples leave COCO crowd regions out.

Pascal VOC boxes are 1-based inclusive pixel indices, which TFDS divides by the
image size unchanged; as the VOC devkit's ``+1`` areas (and detectron2), the
continuous box is ``[xmin - 1, ymin - 1, xmax, ymax]``, used for training and
evaluation alike.

Robustness: boxes are clipped to ``[0, 1]`` and empty or inverted boxes are
dropped together with their labels, and the per-object fields are cut to a
common length. Real TFDS data never needs either, but TFDS' own mock data
(``tfds.testing.mock_data``, used by the tests) produces random boxes and
per-field lengths that differ.
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_pyramids.data import coco_format
from keras_pyramids.data.dataset import DetectionDataset

# The 80 COCO detection categories: official category ids and names, in the
# order of TFDS' contiguous label ids (TFDS keeps the annotation file's order,
# which is by id).
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
    44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87,
    88, 89, 90,
)  # fmt: skip
COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

TFDS_NAMES = ("coco/2017", "voc/2007")
# The evaluation protocol each dataset is reported with by default.
DEFAULT_PROTOCOLS = {"coco/2017": "coco", "voc/2007": "voc2007"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _object_count(objects, fields):
    """Objects of an example: the common length of ``fields`` (TFDS' mock data
    may give each field its own length; real data never does)."""
    count = tf.shape(objects[fields[0]])[0]
    for field in fields[1:]:
        count = tf.minimum(count, tf.shape(objects[field])[0])
    return count


def _voc_continuous(boxes, height, width):
    """VOC's 1-based inclusive pixel boxes (as TFDS normalises them) -> continuous boxes."""
    offset = tf.stack([1.0 / height, 1.0 / width, 0.0, 0.0])
    return boxes - offset


def _objects_to_boxes(objects, skip_flag=None, voc_size=None):
    """TFDS ``objects`` -> ``(boxes float32 [M, 4], classes int32 [M])``.

    Drops objects whose ``skip_flag`` field (e.g. ``is_crowd``) is true and
    boxes that are empty or inverted after clipping to ``[0, 1]``.
    ``voc_size``: ``(height, width)`` of a VOC image (see module docstring).
    """
    fields = ["bbox", "label"] + ([skip_flag] if skip_flag else [])
    count = _object_count(objects, fields)
    boxes = tf.reshape(tf.cast(objects["bbox"], tf.float32), [-1, 4])[:count]
    labels = tf.reshape(tf.cast(objects["label"], tf.int32), [-1])[:count]
    if voc_size is not None:
        boxes = _voc_continuous(boxes, *voc_size)
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if skip_flag:
        keep = keep & tf.logical_not(tf.cast(objects[skip_flag][:count], tf.bool))
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)


def encoded_image_size(contents):
    """``int32 [2]`` ``(height, width)`` of an encoded JPEG or PNG, from its header only."""

    def png_size():
        header = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 16, 8), tf.uint8), tf.int32)
        width = header[0] * 2**24 + header[1] * 2**16 + header[2] * 2**8 + header[3]
        height = header[4] * 2**24 + header[5] * 2**16 + header[6] * 2**8 + header[7]
        return tf.stack([height, width])

    def jpeg_size():
        return tf.image.extract_jpeg_shape(contents)[:2]

    is_png = tf.equal(tf.strings.substr(contents, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
    return tf.cond(is_png, png_size, jpeg_size)


def _image_id(example, index):
    # VOC has no image ids: number its images from 1 in split order.
    return tf.cast(example["image/id"] if "image/id" in example else index + 1, tf.int64)


def _ground_truth(builder, split, name, class_names, category_ids):
    """The evaluation ground truth of a TFDS split, read without decoding images."""
    records = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    is_coco = name == "coco/2017"
    fields = ["bbox", "label"] + (["id", "area", "is_crowd"] if is_coco else ["is_difficult"])

    def metadata(index, example):
        objects = example["objects"]
        count = _object_count(objects, fields)
        record = {field: objects[field][:count] for field in fields}
        record["image_id"] = _image_id(example, index)
        record["size"] = encoded_image_size(example["image"])
        return record

    images, annotations = [], []
    for record in records.enumerate().map(metadata).as_numpy_iterator():
        height, width = (int(v) for v in record["size"])
        image_id = int(record["image_id"])
        images.append({"id": image_id, "width": width, "height": height})
        boxes = record["bbox"].astype(np.float64)
        if not is_coco:
            boxes = boxes - [1.0 / height, 1.0 / width, 0.0, 0.0]
        for index, box in enumerate(np.clip(boxes, 0.0, 1.0)):
            x, y, w, h = coco_format.normalised_to_coco_bbox(box, width, height)
            if w <= 0 or h <= 0:
                continue  # only TFDS' random mock data has these (as in training)
            annotation = {
                "image_id": image_id,
                "category_id": int(category_ids[int(record["label"][index])]),
                "bbox": [x, y, w, h],
            }
            if is_coco:
                annotation.update(id=int(record["id"][index]), area=float(record["area"][index]),
                                  iscrowd=int(record["is_crowd"][index]))
            else:
                annotation.update(id=len(annotations) + 1, area=w * h, iscrowd=0,
                                  difficult=int(record["is_difficult"][index]))
            annotations.append(annotation)
    return {"images": images, "annotations": annotations,
            "categories": coco_format.coco_categories(category_ids, class_names)}


def split_ranges(split, split_infos):
    """``[(split name, start, stop)]`` record ranges a TFDS split spec reads.

    Args:
        split: a TFDS split spec (``"train"``, ``"train[:80%]"``, ``"a+b[5:]"``).
        split_infos: the builder's ``info.splits`` (name -> ``SplitInfo``).
    """
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(split_infos)
    return [(i.splitname, i.from_ or 0, i.to if i.to is not None else split_infos[i.splitname].num_examples)
            for i in instructions]


def _image_source(builder, name, split, num_examples):
    """``(key, start, stop)`` ranges of the records ``split`` reads (see ``DetectionDataset``)."""
    root = os.path.realpath(str(builder.data_dir))
    try:
        ranges = split_ranges(split, builder.info.splits)
    except (ValueError, KeyError, TypeError, AttributeError):
        # Split sizes unknown (e.g. TFDS mock data): each split named counts
        # as its first num_examples records, so the same split overlaps itself.
        names = sorted({part.split("[")[0].strip() for part in split.split("+")})
        ranges = [(n, 0, num_examples or 1) for n in names if n]
    return tuple((("tfds", name, root, split_name), start, stop) for split_name, start, stop in ranges)


def load_tfds(name, split, data_dir=None, download=False, skip_crowd=True, skip_difficult=False):
    """Loads ``coco/2017`` or ``voc/2007`` from TensorFlow Datasets.

    Args:
        name: ``"coco/2017"`` or ``"voc/2007"``.
        split: TFDS split (e.g. ``"train"``, ``"validation"``, ``"test"``, or a
            slice such as ``"validation[:100]"``).
        data_dir: TFDS data directory (TFDS' default if None).
        download: run ``download_and_prepare`` first (large downloads); off by
            default.
        skip_crowd: COCO: leave ``is_crowd`` objects out of the training boxes
            (the evaluation ground truth keeps them).
        skip_difficult: VOC: leave ``is_difficult`` objects out of the
            training boxes (the evaluation ground truth keeps them flagged).

    Returns:
        :class:`DetectionDataset`; COCO's ``category_ids`` are the official
        COCO ids (1..90 with gaps), VOC's are ``0..19``. ``image_id`` is COCO's
        image id, and for VOC (which has none) the example's position + 1.
        ``protocol`` is ``"coco"`` for COCO, ``"voc2007"`` for VOC 2007.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: the dataset is not prepared in ``data_dir`` and
            ``download`` is False.
    """
    if name not in TFDS_NAMES:
        raise ValueError(f"Unknown TFDS dataset {name!r}; known: {', '.join(TFDS_NAMES)}.")
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError as error:
        # TFDS signals "not prepared" with an AssertionError.
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir}: {error} "
            "Prepare it with tfds (or pass download=True), or pass data_dir= where it is."
        ) from None
    num_examples = None
    try:
        cardinality = int(dataset.cardinality())
        if cardinality >= 0:
            num_examples = cardinality
    except (TypeError, ValueError):
        pass
    names = list(builder.info.features["objects"]["label"].names)

    if name == "coco/2017":
        # Without the prepared metadata (e.g. under TFDS mocking) the label
        # names are placeholders "0".."79"; use the official ones then.
        if len(names) == len(COCO_CLASS_NAMES) and all(n.isdigit() for n in names):
            names = list(COCO_CLASS_NAMES)
        category_ids = list(COCO_CATEGORY_IDS) if len(names) == len(COCO_CATEGORY_IDS) else None
        skip_flag = "is_crowd" if skip_crowd else None
    else:
        category_ids = None
        skip_flag = "is_difficult" if skip_difficult else None
    is_voc = name == "voc/2007"

    def convert(index, example):
        image = example["image"]
        voc_size = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32)) if is_voc else None
        boxes, classes = _objects_to_boxes(example["objects"], skip_flag, voc_size)
        return {"image": image, "boxes": boxes, "classes": classes,
                "image_id": _image_id(example, index)}

    examples = dataset.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    category_ids = category_ids or list(range(len(names)))
    return DetectionDataset(
        examples=examples,
        class_names=names,
        category_ids=category_ids,
        num_examples=num_examples,
        ground_truth_fn=lambda: _ground_truth(builder, split, name, names, category_ids),
        protocol=DEFAULT_PROTOCOLS[name],
        image_source=_image_source(builder, name, split, num_examples),
        description=f"{name} split {split!r}",
    )
