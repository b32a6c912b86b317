"""Refusing training data a detector cannot learn from, before the model is built.

A split without a single box, or whose class ids all lie outside
``0 .. num_classes - 1`` (the target assigner one-hot encodes them to
"background"), trains without error to a model that detects nothing; the
run would end with exit 0 and AP -1. :func:`check_learnable` reads only the
class ids of the examples: the image-decoding part of the source is pruned by
tf.data's map fusion, so it costs a pass over the annotations, not the images.
"""

import warnings

import numpy as np
import tensorflow as tf

# Splits up to this size are scanned completely; of larger ones (e.g. COCO
# from TFDS, whose records must be read) the first this many examples.
SCAN_LIMIT = 20000


def label_counts(examples, num_classes, limit=None):
    """``(images, boxes, in_range_boxes, min_class, max_class)`` over the first ``limit`` examples."""
    classes = examples.map(lambda example: example["classes"])
    options = tf.data.Options()
    # Fused with the source's map, the image decode has no consumer and is dropped.
    options.experimental_optimization.map_fusion = True
    classes = classes.with_options(options)
    if limit is not None:
        classes = classes.take(limit)
    images = boxes = in_range = 0
    low, high = None, None
    for values in classes.as_numpy_iterator():
        images += 1
        values = np.asarray(values).reshape(-1)
        boxes += values.size
        if values.size:
            in_range += int(np.count_nonzero((values >= 0) & (values < num_classes)))
            low = int(values.min()) if low is None else min(low, int(values.min()))
            high = int(values.max()) if high is None else max(high, int(values.max()))
    return images, boxes, in_range, low, high


def check_learnable(dataset, what, limit=SCAN_LIMIT):
    """Raises ``ValueError`` if ``dataset`` (a ``DetectionDataset``) has no box to learn from,
    or boxes with class ids outside its classes; ``what`` names it (e.g. ``"shapes:train"``)."""
    known = dataset.num_examples
    scan_all = known is not None and known <= limit
    images, boxes, in_range, low, high = label_counts(dataset.examples, dataset.num_classes,
                                                      None if scan_all else limit)
    if images == 0:
        raise ValueError(f"The training split {what} has no images.")
    if boxes == 0:
        if not scan_all:
            warnings.warn(f"The first {images} images of {what} have no boxes; training may learn nothing.")
            return
        raise ValueError(
            f"The training split {what} has no boxes in any of its {images} images: a detector cannot "
            "learn from it. Check the annotations (and dataset_kwargs).")
    if in_range < boxes:
        raise ValueError(
            f"{boxes - in_range} of the {boxes} boxes of {what} have class ids outside "
            f"0..{dataset.num_classes - 1} (seen {low}..{high}); training would count them as background. Check the annotations' "
            "category ids.")
