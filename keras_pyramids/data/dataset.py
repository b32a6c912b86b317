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
import os
from typing import Callable, Hashable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from keras_pyramids.data import coco_format

# Float error allowed on normalised coordinates before a box counts as outside
# the image; values within it are clipped to [0, 1].
BOX_TOLERANCE = 1e-3
# Decoded images are cached in memory when they take at most this share of it.
CACHE_MEMORY_FRACTION = 0.25


def physical_memory():
    """Bytes of memory of this machine (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


@dataclasses.dataclass
class DetectionDataset:
    """A source of detection examples, its class list and its evaluation ground truth.

    Attributes:
        examples: ``tf.data.Dataset`` of source examples (see module docstring),
            unbatched, not shuffled.
        class_names: class name per contiguous class id ``0 .. num_classes - 1``.
        category_ids: the dataset's own id for each class id (e.g. COCO category
            ids), so evaluation can map predictions back; defaults to
            ``list(range(num_classes))``.
        num_examples: number of examples, or ``None`` when unknown.
        ground_truth_fn: returns the evaluation ground truth as a COCO dict
            (:mod:`keras_pyramids.data.coco_format`) from the source's own
            annotations, without decoding images; ``None``: built from
            ``examples`` (see :meth:`coco_ground_truth`).
        protocol: the evaluation protocol this dataset is reported with by
            default (``"coco"``; ``"voc2007"`` for Pascal VOC 2007); names are
            those of ``keras_pyramids.evaluation.PROTOCOLS``.
        image_source: which images the examples are, as ``(key, start, stop)``
            ranges (images ``start .. stop - 1`` of the collection ``key``), so
            :func:`shared_images` can tell whether two datasets share images;
            ``None`` when unknown.
        description: where the data comes from, for messages (e.g.
            ``"coco_folder split 'train' (data/annotations.json)"``).
        decoded_bytes: memory the decoded images take (uint8 ``H x W x 3``
            each), for sources that decode image files; ``None`` for sources
            already in memory (the generated ones) or of unknown size.
    """

    examples: tf.data.Dataset
    class_names: List[str]
    category_ids: Optional[List[int]] = None
    num_examples: Optional[int] = None
    ground_truth_fn: Optional[Callable[[], dict]] = None
    protocol: str = "coco"
    image_source: Optional[Tuple[Tuple[Hashable, int, int], ...]] = None
    description: str = ""
    decoded_bytes: Optional[int] = None

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
        if self.image_source is not None:
            self.image_source = tuple((key, int(start), int(stop)) for key, start, stop in self.image_source)

    @property
    def num_classes(self):
        return len(self.class_names)

    def worth_caching(self, memory_fraction=CACHE_MEMORY_FRACTION):
        """Whether keeping the decoded images in memory pays: the source decodes files
        (``decoded_bytes`` known) and they take at most ``memory_fraction`` of the machine's memory."""
        if self.decoded_bytes is None:
            return False
        return self.decoded_bytes <= memory_fraction * physical_memory()

    def coco_ground_truth(self):
        """The evaluation ground truth as a COCO dict (:mod:`keras_pyramids.data.coco_format`).

        From ``ground_truth_fn`` when the source has one (every built-in
        source: no image is decoded); otherwise by iterating ``examples`` once,
        which decodes every image and knows only the boxes the examples keep.
        """
        if self.ground_truth_fn is not None:
            return self.ground_truth_fn()
        return coco_format.ground_truth_from_examples(self)


def shared_images(first, second):
    """How many images two :class:`DetectionDataset` s have in common.

    Compares their ``image_source`` ranges; 0 when either source is unknown.
    """
    if first.image_source is None or second.image_source is None:
        return 0
    ranges = {}
    for key, start, stop in first.image_source:
        ranges.setdefault(key, []).append((start, stop))
    shared = 0
    for key, start, stop in second.image_source:
        for other_start, other_stop in ranges.get(key, ()):
            shared += max(0, min(stop, other_stop) - max(start, other_start))
    return shared


def check_distinct(train_data, eval_data, allow_shared=False):
    """Refuses to evaluate on training images unless ``allow_shared``.

    Raises:
        ValueError: naming both datasets and how many images they share.
    """
    if allow_shared:
        return
    shared = shared_images(train_data, eval_data)
    if shared:
        raise ValueError(
            f"The evaluation data ({eval_data.description or 'eval split'}) shares {shared} "
            f"images with the training data ({train_data.description or 'train split'}), so its "
            "metrics would not measure held-out performance. Choose a held-out split, or set "
            "allow_eval_on_train (--allow-eval-on-train) to evaluate on training images anyway."
        )


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
