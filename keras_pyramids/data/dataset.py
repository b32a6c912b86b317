"""The detection-dataset contract shared by every data source.

A *source example* is a dict::

    {"image": uint8 [H, W, 3],
     "boxes": float32 [M, 4] normalised [ymin, xmin, ymax, xmax] in [0, 1],
     "classes": int32 [M] in 0 .. num_classes - 1,
     "image_id": int64 scalar}

``M`` may be 0 (an image without objects is a valid example). Every loader
returns a :class:`DetectionDataset` whose ``examples`` yields such dicts, unbatched
and unshuffled, so the training and evaluation pipelines
(:mod:`keras_pyramids.data.pipeline`) work the same on all of them.
"""

import dataclasses
from typing import List, Optional

import numpy as np
import tensorflow as tf

# Float error allowed on normalised coordinates before a box counts as outside
# the image; values within it are clipped to [0, 1].
BOX_TOLERANCE = 1e-3


@dataclasses.dataclass
class DetectionDataset:
    """A source of detection examples and its class list.

    Attributes:
        examples: ``tf.data.Dataset`` of source examples (see module docstring),
            unbatched, not shuffled.
        class_names: class name per contiguous class id ``0 .. num_classes - 1``.
        category_ids: the dataset's own id for each class id (e.g. COCO category
            ids), so evaluation can map predictions back; defaults to
            ``list(range(num_classes))``.
        num_examples: number of examples, or ``None`` when unknown.
    """

    examples: tf.data.Dataset
    class_names: List[str]
    category_ids: Optional[List[int]] = None
    num_examples: Optional[int] = None

    def __post_init__(self):
        self.class_names = [str(name) for name in self.class_names]
        if self.category_ids is None:
            self.category_ids = list(range(len(self.class_names)))
        self.category_ids = [int(i) for i in self.category_ids]
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(
                f"DetectionDataset got {len(self.class_names)} class names but "
                f"{len(self.category_ids)} category ids."
            )

    @property
    def num_classes(self):
        return len(self.class_names)


def validate_boxes(boxes, where="boxes", tolerance=BOX_TOLERANCE):
    """Checks normalised ``[ymin, xmin, ymax, xmax]`` boxes and clips float error.

    Args:
        boxes: array-like ``[M, 4]`` (``M`` may be 0).
        where: what the boxes belong to (e.g. ``"image 'a.jpg'"``), used in the
            error message.
        tolerance: coordinates in ``[-tolerance, 1 + tolerance]`` are accepted
            and clipped to ``[0, 1]``.

    Returns:
        float32 ``[M, 4]`` array with ``0 <= ymin < ymax <= 1`` and
        ``0 <= xmin < xmax <= 1``.

    Raises:
        ValueError: naming ``where``, the box index and the problem (wrong shape,
            non-finite value, outside the image, empty or inverted box).
    """
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"{where}: boxes must have shape [M, 4] (ymin, xmin, ymax, xmax), got shape "
            f"{list(array.shape)}."
        )
    for index, box in enumerate(array):
        if not np.all(np.isfinite(box)):
            raise ValueError(f"{where}: box {index} {box.tolist()} has a non-finite coordinate.")
        if np.any(box < -tolerance) or np.any(box > 1 + tolerance):
            raise ValueError(
                f"{where}: box {index} {box.tolist()} lies outside the image; normalised "
                "coordinates must be in [0, 1]."
            )
    array = np.clip(array, 0.0, 1.0)
    for index, (ymin, xmin, ymax, xmax) in enumerate(array):
        if not (ymin < ymax and xmin < xmax):
            raise ValueError(
                f"{where}: box {index} {[ymin, xmin, ymax, xmax]} is empty or inverted; "
                "need ymin < ymax and xmin < xmax."
            )
    return array.astype(np.float32)


def example_signature():
    """``tf.TensorSpec`` dict of one source example (for ``from_generator``)."""
    return {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "classes": tf.TensorSpec([None], tf.int32),
        "image_id": tf.TensorSpec([], tf.int64),
    }


def ragged_rows(arrays, inner_shape, dtype):
    """Stacks per-example arrays of varying length into a ``tf.RaggedTensor``.

    ``from_tensor_slices`` on the result yields one dense ``[M_i, *inner_shape]``
    tensor per example, which is how variable box counts enter ``tf.data``
    without Python generators.
    """
    lengths = np.array([len(a) for a in arrays], np.int64)
    flat = (
        np.concatenate([np.asarray(a, dtype).reshape((-1,) + tuple(inner_shape)) for a in arrays])
        if len(arrays)
        else np.zeros((0,) + tuple(inner_shape), dtype)
    )
    return tf.RaggedTensor.from_row_lengths(flat, lengths)


DATASET_NAMES = ("shapes", "coco_folder", "coco/2017", "voc/2007")


def load_dataset(name, split, data_dir=None, **kwargs):
    """Loads a detection dataset by name.

    Args:
        name: ``"shapes"`` (built-in, generated from a seed; kwargs
            ``num_examples``, ``image_size``, ``seed``...), ``"coco_folder"``
            (a COCO-format folder: ``data_dir`` or kwargs ``annotation_file``,
            ``image_dir``), ``"coco/2017"`` or ``"voc/2007"`` (TensorFlow
            Datasets; ``data_dir`` is passed to TFDS; nothing is downloaded
            unless ``download=True``).
        split: split name, e.g. ``"train"``, ``"validation"``, ``"test"``.
        data_dir: where the data lives: the COCO folder, the TFDS data
            directory, or for ``"shapes"`` an optional ``.npz`` cache directory.
        **kwargs: passed to the source's loader
            (:func:`keras_pyramids.data.shapes.load_shapes`,
            :func:`keras_pyramids.data.coco_folder.load_coco_folder`,
            :func:`keras_pyramids.data.tfds_datasets.load_tfds`).

    Returns:
        :class:`DetectionDataset`.

    Raises:
        ValueError: unknown ``name`` (the message lists the known names).
    """
    # Imported lazily so that, e.g., using the shapes dataset does not import
    # tensorflow_datasets.
    if name == "shapes":
        from keras_pyramids.data import shapes

        if data_dir is not None:
            kwargs.setdefault("cache_dir", data_dir)
        return shapes.load_shapes(split, **kwargs)
    if name == "coco_folder":
        from keras_pyramids.data import coco_folder

        return coco_folder.load_coco_folder(data_dir, split=split, **kwargs)
    if name in ("coco/2017", "voc/2007"):
        from keras_pyramids.data import tfds_datasets

        return tfds_datasets.load_tfds(name, split, data_dir=data_dir, **kwargs)
    raise ValueError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}.")
