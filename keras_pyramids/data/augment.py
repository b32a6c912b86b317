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
  bookkeeping (change of frame, clipping, dropping boxes) is :func:`crop_boxes`.
  The settings are the OD API's ``ssd_random_crop`` defaults, which the PPN and
  SSD MobileNet configs use (``research/object_detection/core/preprocessor.py``):
  ``min_object_covered`` and ``overlap_thresh`` (0, 0.1, 0.3, 0.5, 0.7, 0.9,
  1.0) drawn as one case, aspect ratio (0.5, 2), area (0.1, 1), and
  ``random_coef`` 0.15: the original image is kept with probability 0.15.
  A box stays when at least ``overlap_thresh`` of its own area is inside the
  patch (``prune_non_overlapping_boxes``: intersection over the box's area),
  after the boxes entirely outside it are dropped
  (``prune_completely_outside_window``); the SSD paper's wording, keep a box
  "if the center of it is in the sampled patch", is ``box_rule="centre"``.

- Scale jitter (:func:`random_scale_jitter`): the image is scaled by a
  random factor and cropped or padded back to its frame, the Model Garden's
  ``resize_and_crop_image`` with ``aug_scale_min`` / ``aug_scale_max`` for
  images resized without keeping the aspect ratio; factors below 1 are SSD's
  "zoom out" (section 3.6, "more small training examples"). Keras 3's
  ``RandomZoom`` has no bounding-box support, hence the function.

Each can be switched off on its own (``TrainConfig.flip``, ``ssd_crop``,
``scale_jitter``): a horizontal flip turns a left-pointing arrow, a "b" or a
mirrored glyph into another class.

All boxes are normalised ``[ymin, xmin, ymax, xmax]``.
"""

import keras
import tensorflow as tf

# SSD section 2.2: "sample a patch so that the minimum jaccard overlap with the
# objects is 0.1, 0.3, 0.5, 0.7, or 0.9", or "randomly sample a patch". The OD
# API's ssd_random_crop constrains the fraction of a box the patch covers
# (``min_object_covered``, what ``sample_distorted_bounding_box`` supports) and
# adds the case 1.0; each case keeps boxes with the same overlap_thresh.
MIN_OBJECT_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
ASPECT_RATIO_RANGE = (0.5, 2.0)
AREA_RANGE = (0.1, 1.0)
# ssd_random_crop's random_coef: the chance of keeping the original image.
KEEP_ORIGINAL_PROBABILITY = 0.15
BOX_RULES = ("overlap", "centre")
# With the centre rule, boxes whose clipped area (normalised to the patch) is below this are dropped.
MIN_BOX_AREA = 1e-4


def crop_boxes(boxes, classes, window, overlap_threshold=0.0, box_rule="overlap", min_area=MIN_BOX_AREA):
    """Moves boxes into the frame of a crop window and drops the ones the crop loses.

    ``box_rule="overlap"`` (the OD API's ``_strict_random_crop_image``): a box
    stays if it is not entirely outside the window (touching an edge counts as
    outside) and at least ``overlap_threshold`` of its area is inside; boxes
    of zero area never stay. ``box_rule="centre"`` (SSD paper section 2.2: "we
    keep the overlapped part of the ground truth box if the center of it is in
    the sampled patch"): a box stays if its centre is strictly inside and its
    clipped area is at least ``min_area`` of the patch.

    Args:
        boxes: float32 ``[M, 4]`` normalised yxyx in the original image.
        classes: int32 ``[M]``.
        window: ``[4]`` crop window ``[ymin, xmin, ymax, xmax]`` in the
            original image's normalised coordinates, non-empty.
        overlap_threshold: the fraction of a box that must be inside.

    Returns:
        ``(boxes [K, 4] in the crop's normalised coordinates, clipped to
        [0, 1], classes [K])`` with ``K <= M``.
    """
    if box_rule not in BOX_RULES:
        raise ValueError(f"box_rule must be one of {BOX_RULES}; got {box_rule!r}.")
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    window = tf.cast(window, tf.float32)
    origin = tf.tile(window[:2], [2])
    extent = tf.tile(window[2:] - window[:2], [2])
    moved = tf.clip_by_value((boxes - origin) / extent, 0.0, 1.0)
    if box_rule == "centre":
        centre_y = (boxes[:, 0] + boxes[:, 2]) / 2.0
        centre_x = (boxes[:, 1] + boxes[:, 3]) / 2.0
        inside = (centre_y > window[0]) & (centre_y < window[2]) & (centre_x > window[1]) & (centre_x < window[3])
        area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
        keep = inside & (area >= min_area)
    else:
        outside = ((boxes[:, 0] >= window[2]) | (boxes[:, 1] >= window[3])
                   | (boxes[:, 2] <= window[0]) | (boxes[:, 3] <= window[1]))
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        inter_h = tf.maximum(tf.minimum(boxes[:, 2], window[2]) - tf.maximum(boxes[:, 0], window[0]), 0.0)
        inter_w = tf.maximum(tf.minimum(boxes[:, 3], window[3]) - tf.maximum(boxes[:, 1], window[1]), 0.0)
        covered = inter_h * inter_w / tf.maximum(box_area, 1e-12)
        keep = ~outside & (box_area > 0.0) & (covered >= overlap_threshold)
    return tf.boolean_mask(moved, keep), tf.boolean_mask(classes, keep)


def sample_ssd_crop_window(image_shape, boxes, seed):
    """Samples one SSD crop window (the OD API's ``ssd_random_crop``).

    With probability :data:`KEEP_ORIGINAL_PROBABILITY` the whole image is kept;
    otherwise one case of :data:`MIN_OBJECT_COVERED` is drawn and a patch with
    aspect ratio in ``(0.5, 2)`` and area in ``(0.1, 1)`` of the image covering
    at least that fraction of some box is sampled by
    ``tf.image.stateless_sample_distorted_bounding_box`` (which returns the
    whole image if no patch fits in 100 attempts).

    Args:
        image_shape: ``[H, W, C]`` int tensor.
        boxes: float32 ``[M, 4]`` normalised yxyx (may be empty; then any patch
            is allowed).
        seed: int ``[2]`` tensor for the stateless random ops.

    Returns:
        ``(offset [3] int32, size [3] int32, window [4] float32 normalised,
        overlap_threshold float32)`` for ``tf.slice`` and :func:`crop_boxes`
        (the threshold is the case's, 0 when the whole image is kept).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    choice = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=len(MIN_OBJECT_COVERED), dtype=tf.int32)
    covered = tf.gather(tf.constant(MIN_OBJECT_COVERED, tf.float32), choice)
    offset, size, window = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=tf.reshape(tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0), [1, -1, 4]),
        seed=seeds[1],
        min_object_covered=covered,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=AREA_RANGE,
        max_attempts=100,
        use_image_if_no_bounding_boxes=True,
    )
    keep_whole = tf.random.stateless_uniform([], seeds[2]) <= KEEP_ORIGINAL_PROBABILITY
    offset = tf.where(keep_whole, tf.zeros_like(offset), offset)
    size = tf.where(keep_whole, tf.constant([-1, -1, -1], size.dtype), size)
    window = tf.where(keep_whole, tf.constant([0.0, 0.0, 1.0, 1.0]), tf.reshape(window, [4]))
    return offset, size, window, tf.where(keep_whole, 0.0, covered)


def ssd_random_crop(image, boxes, classes, seed, box_rule="overlap"):
    """SSD random crop of one example (see module docstring).

    Args:
        image: ``[H, W, C]`` tensor (any dtype).
        boxes: float32 ``[M, 4]`` normalised yxyx.
        classes: int32 ``[M]``.
        seed: int ``[2]`` tensor; the same seed gives the same crop.
        box_rule: which boxes survive the crop, ``"overlap"`` (the OD API's
            rule, default) or ``"centre"`` (the SSD paper's wording); see
            :func:`crop_boxes`.

    Returns:
        ``(image [h, w, C], boxes [K, 4], classes [K])``; the crop is not
        resized (the pipeline resizes afterwards). When the original image is
        kept, so are its boxes (clipped to it; zero-area boxes are dropped).
    """
    offset, size, window, overlap_threshold = sample_ssd_crop_window(tf.shape(image), boxes, seed)
    image = tf.slice(image, offset, size)
    cropped_boxes, cropped_classes = crop_boxes(boxes, classes, window, overlap_threshold, box_rule)
    return image, cropped_boxes, cropped_classes


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


# Grey of the canvas around a zoomed-out image (the middle of 0..255).
PAD_VALUE = 127.5


def random_scale_jitter(image, boxes, classes, scale_range, output_shape, seed):
    """Scales an image by a random factor and crops or pads it back to its own frame.

    A factor ``s`` is drawn uniformly from ``scale_range``; the output shows a
    window of ``1 / s`` of the image's height and width at a random place
    (inside the image for ``s > 1``, a zoom in; around it for ``s < 1``, a
    zoom out onto a grey canvas), resampled bilinearly to ``output_shape``.
    Boxes move into the window's frame (:func:`crop_boxes`: boxes entirely
    outside it are dropped, the rest clipped).

    Args:
        image: ``[H, W, C]`` tensor.
        boxes: float32 ``[M, 4]`` normalised yxyx.
        classes: int32 ``[M]``.
        scale_range: ``(min, max)`` factors, ``0 < min <= max``.
        output_shape: ``(h, w)`` of the output image.
        seed: int ``[2]`` tensor for the stateless random ops.

    Returns:
        ``(image float32 [h, w, C], boxes [K, 4], classes [K])``.
    """
    low, high = (float(v) for v in scale_range)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    scale = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=high)
    extent = 1.0 / scale
    # The window's top-left corner: anywhere that keeps the window inside the
    # image (zoom in) or the image inside the window (zoom out).
    origin = tf.random.stateless_uniform([2], seeds[1]) * (1.0 - extent)
    window = tf.concat([origin, origin + extent], axis=0)
    image = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], window[None], [0], output_shape,
                                     extrapolation_value=PAD_VALUE)[0]
    boxes, classes = crop_boxes(boxes, classes, window)
    return image, boxes, classes
