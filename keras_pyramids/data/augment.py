"""Box-aware augmentation for one (unbatched) example with a variable box count.

- Horizontal flip: Keras 3's ``keras.layers.RandomFlip(bounding_box_format=...)``
  handles images with bounding boxes, unbatched, inside ``tf.data`` and with
  any number of boxes (including none), so it is used as is.
- SSD random crop (Liu et al., "SSD", section 2.2 "Data augmentation"; the TF
  Object Detection API's ``ssd_random_crop``): written here because neither
  Keras nor TF provides it. ``keras.layers.RandomCrop`` crops a fixed output
  size without a minimum-object-coverage constraint and keeps every box, and
  ``keras.layers.RandomZoom``/``RandomTranslation`` do not sample patches by
  object overlap. TF provides the sampling step,
  ``tf.image.stateless_sample_distorted_bounding_box``, which we use; the box
  bookkeeping (change of frame, clipping, dropping boxes whose centre leaves the
  patch) is :func:`crop_boxes`.

All boxes are normalised ``[ymin, xmin, ymax, xmax]``.
"""

import keras
import tensorflow as tf

# SSD section 2.2: "sample a patch so that the minimum jaccard overlap with the
# objects is 0.1, 0.3, 0.5, 0.7, or 0.9", or "randomly sample a patch"
# (0.0), or "use the entire original input image". As in the TF OD API the
# constraint is the fraction of a box covered by the patch
# (``min_object_covered``), which is what ``sample_distorted_bounding_box``
# supports.
MIN_OBJECT_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
ASPECT_RATIO_RANGE = (0.5, 2.0)
AREA_RANGE = (0.1, 1.0)
# Boxes whose clipped area (normalised to the patch) is below this are dropped.
MIN_BOX_AREA = 1e-4


def crop_boxes(boxes, classes, window, min_area=MIN_BOX_AREA):
    """Moves boxes into the frame of a crop window, SSD style.

    Keeps a box only if its centre lies inside the window (SSD section 2.2:
    "we keep the overlapped part of the ground truth box if the center of it is
    in the sampled patch") and its clipped area is at least ``min_area`` of the
    patch.

    Args:
        boxes: float32 ``[M, 4]`` normalised yxyx in the original image.
        classes: int32 ``[M]``.
        window: ``[4]`` crop window ``[ymin, xmin, ymax, xmax]`` in the
            original image's normalised coordinates, non-empty.
        min_area: minimum clipped box area as a fraction of the patch.

    Returns:
        ``(boxes [K, 4] in the crop's normalised coordinates, clipped to
        [0, 1], classes [K])`` with ``K <= M``.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    window = tf.cast(window, tf.float32)
    origin = tf.tile(window[:2], [2])
    extent = tf.tile(window[2:] - window[:2], [2])
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2.0
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2.0
    centre_inside = (
        (centre_y > window[0]) & (centre_y < window[2]) & (centre_x > window[1]) & (centre_x < window[3])
    )
    moved = tf.clip_by_value((boxes - origin) / extent, 0.0, 1.0)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    keep = centre_inside & (area >= min_area)
    return tf.boolean_mask(moved, keep), tf.boolean_mask(classes, keep)


def sample_ssd_crop_window(image_shape, boxes, seed):
    """Samples one SSD crop window.

    With probability ``1/7`` the whole image is kept; otherwise
    ``min_object_covered`` is drawn from :data:`MIN_OBJECT_COVERED` and a patch
    with aspect ratio in ``(0.5, 2)`` and area in ``(0.1, 1)`` of the image is
    sampled by ``tf.image.stateless_sample_distorted_bounding_box`` (which
    returns the whole image if no patch fits in 100 attempts).

    Args:
        image_shape: ``[H, W, C]`` int tensor.
        boxes: float32 ``[M, 4]`` normalised yxyx (may be empty; then any patch
            is allowed).
        seed: int ``[2]`` tensor for the stateless random ops.

    Returns:
        ``(offset [3] int32, size [3] int32, window [4] float32 normalised)``
        for ``tf.slice`` and :func:`crop_boxes`.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    choice = tf.random.stateless_uniform(
        [], seeds[0], minval=0, maxval=len(MIN_OBJECT_COVERED) + 1, dtype=tf.int32
    )
    covered = tf.gather(tf.constant(MIN_OBJECT_COVERED + (0.0,), tf.float32), choice)
    offset, size, window = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=tf.reshape(tf.cast(boxes, tf.float32), [1, -1, 4]),
        seed=seeds[1],
        min_object_covered=covered,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=AREA_RANGE,
        max_attempts=100,
        use_image_if_no_bounding_boxes=True,
    )
    keep_whole = tf.equal(choice, len(MIN_OBJECT_COVERED))
    offset = tf.where(keep_whole, tf.zeros_like(offset), offset)
    size = tf.where(keep_whole, tf.constant([-1, -1, -1], size.dtype), size)
    window = tf.where(keep_whole, tf.constant([0.0, 0.0, 1.0, 1.0]), tf.reshape(window, [4]))
    return offset, size, window


def ssd_random_crop(image, boxes, classes, seed):
    """SSD random crop of one example (see module docstring).

    Args:
        image: ``[H, W, C]`` tensor (any dtype).
        boxes: float32 ``[M, 4]`` normalised yxyx.
        classes: int32 ``[M]``.
        seed: int ``[2]`` tensor; the same seed gives the same crop.

    Returns:
        ``(image [h, w, C], boxes [K, 4], classes [K])``; the crop is not
        resized (the pipeline resizes afterwards).
    """
    offset, size, window = sample_ssd_crop_window(tf.shape(image), boxes, seed)
    image = tf.slice(image, offset, size)
    boxes, classes = crop_boxes(boxes, classes, window)
    return image, boxes, classes


def make_random_flip(seed=None):
    """Keras' horizontal flip layer for normalised yxyx boxes.

    ``seed`` seeds the layer's ``SeedGenerator``; under a parallel ``tf.data``
    map the order in which examples draw from it is not fixed, so flips are
    random but not reproducible run to run (the crop, which takes per-example
    seeds, is).
    """
    return keras.layers.RandomFlip("horizontal", bounding_box_format="rel_yxyx", seed=seed)


def random_horizontal_flip(image, boxes, classes, flip_layer):
    """Flips ``image`` ``[H, W, C]`` left-right with probability 1/2 and mirrors
    its boxes (``xmin' = 1 - xmax``, ``xmax' = 1 - xmin``).

    Args:
        flip_layer: from :func:`make_random_flip` (create it once, outside the
            ``tf.data`` map, so its random state persists across examples).

    Returns:
        ``(image float32 [H, W, C], boxes float32 [M, 4], classes [M])``.
    """
    out = flip_layer(
        {
            "images": tf.cast(image, tf.float32),
            "bounding_boxes": {"boxes": tf.cast(boxes, tf.float32), "labels": classes},
        },
        training=True,
    )
    return out["images"], out["bounding_boxes"]["boxes"], classes
