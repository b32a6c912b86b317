"""TensorFlow Datasets sources: ``coco/2017`` and ``voc/2007``.

TFDS already stores boxes as normalised ``[ymin, xmin, ymax, xmax]``
(``BBoxFeature``) and labels as contiguous ids, so conversion to source
examples is a ``tf.data`` map. Nothing is downloaded unless the caller passes
``download=True``; a missing dataset raises ``FileNotFoundError`` saying how to
get it.

Robustness: boxes are clipped to ``[0, 1]`` and empty or inverted boxes are
dropped together with their labels, and the per-object fields are cut to a
common length. Real TFDS data never needs either, but TFDS' own mock data
(``tfds.testing.mock_data``, used by the tests) produces random boxes and
per-field lengths that differ.
"""

import tensorflow as tf

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


def _objects_to_boxes(objects, skip_flag=None):
    """TFDS ``objects`` -> ``(boxes float32 [M, 4], classes int32 [M])``.

    Drops objects whose ``skip_flag`` field (e.g. ``is_crowd``) is true and
    boxes that are empty or inverted after clipping to ``[0, 1]``.
    """
    boxes = tf.reshape(tf.cast(objects["bbox"], tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(objects["label"], tf.int32), [-1])
    count = tf.minimum(tf.shape(boxes)[0], tf.shape(labels)[0])
    keep_flag = None
    if skip_flag is not None:
        flags = tf.reshape(tf.cast(objects[skip_flag], tf.bool), [-1])
        count = tf.minimum(count, tf.shape(flags)[0])
        keep_flag = tf.logical_not(flags[:count])
    boxes = tf.clip_by_value(boxes[:count], 0.0, 1.0)
    labels = labels[:count]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if keep_flag is not None:
        keep = keep & keep_flag
    return tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)


def load_tfds(name, split, data_dir=None, download=False, skip_crowd=True, skip_difficult=False):
    """Loads ``coco/2017`` or ``voc/2007`` from TensorFlow Datasets.

    Args:
        name: ``"coco/2017"`` or ``"voc/2007"``.
        split: TFDS split (e.g. ``"train"``, ``"validation"``, ``"test"``, or a
            slice such as ``"validation[:100]"``).
        data_dir: TFDS data directory (TFDS' default if None).
        download: run ``download_and_prepare`` first (large downloads); off by
            default.
        skip_crowd: COCO: drop ``is_crowd`` objects.
        skip_difficult: VOC: drop ``is_difficult`` objects.

    Returns:
        :class:`DetectionDataset`; COCO's ``category_ids`` are the official
        COCO ids (1..90 with gaps), VOC's are ``0..19``. ``image_id`` is COCO's
        image id, and for VOC (which has none) the example's position + 1.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: the dataset is not prepared in ``data_dir`` and
            ``download`` is False.
    """
    if name not in TFDS_NAMES:
        raise ValueError(f"Unknown TFDS dataset {name!r}; known: {', '.join(TFDS_NAMES)}.")
    import tensorflow_datasets as tfds

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

    def convert(index, example):
        boxes, classes = _objects_to_boxes(example["objects"], skip_flag)
        # VOC has no image ids: number its images from 1 in split order.
        image_id = example["image/id"] if "image/id" in example else index + 1
        return {
            "image": example["image"],
            "boxes": boxes,
            "classes": classes,
            "image_id": tf.cast(image_id, tf.int64),
        }

    examples = dataset.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return DetectionDataset(
        examples=examples,
        class_names=names,
        category_ids=category_ids,
        num_examples=num_examples,
    )
