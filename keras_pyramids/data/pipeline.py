"""``tf.data`` pipelines from source examples to model inputs.

Targets are encoded per example, before batching, by a
:meth:`model.target_assigner() <keras_pyramids.models.detector.Detector>`, so every batch has
static shapes (``[B, H, W, 3]`` images, ``[B, N, 4]`` box codes, ``[B, N]``
class targets for ``N`` anchors) whatever the number of objects per image,
as XLA and TPUs need.

Images are resized to the fixed input size without keeping the aspect ratio
(the SSD reference's ``fixed_shape_resizer``), so normalised boxes are
unchanged by the resize.
"""

import tensorflow as tf

from keras_pyramids.data import augment as augment_lib
from keras_pyramids.data.dataset import DetectionDataset
from keras_pyramids.image_size import to_hw

DEFAULT_SHUFFLE_BUFFER = 1000


def _as_examples(examples):
    """Accepts a :class:`DetectionDataset` or a ``tf.data.Dataset`` of source examples."""
    if isinstance(examples, DetectionDataset):
        return examples.examples
    if not isinstance(examples, tf.data.Dataset):
        raise TypeError(
            f"examples must be a DetectionDataset or tf.data.Dataset, got {type(examples).__name__}."
        )
    missing = {"image", "boxes", "classes"} - set(examples.element_spec)
    if missing:
        raise ValueError(f"Source examples lack the keys {sorted(missing)}.")
    return examples


def resize_image(image, image_shape):
    """``[h, w, 3]`` image of any dtype -> float32 ``[H, W, 3]`` in 0..255
    (bilinear, aspect ratio not kept)."""
    image = tf.image.resize(tf.cast(image, tf.float32), image_shape, method="bilinear")
    return tf.clip_by_value(image, 0.0, 255.0)


def make_detection_pipeline(
    examples,
    target_assigner,
    image_size,
    batch_size,
    training,
    shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
    augment=True,
    seed=None,
    drop_remainder=None,
    crop_box_rule="overlap",
    flip=True,
    ssd_crop=True,
    scale_jitter=None,
    cache=False,
):
    """Batches of ``(images, targets)`` for training or loss evaluation.

    Args:
        examples: :class:`DetectionDataset` or ``tf.data.Dataset`` of source
            examples.
        target_assigner: callable ``(boxes [M, 4], classes [M]) ->
            {"boxes": [N, 4], "classes": [N]}`` (``model.target_assigner()``).
        image_size: int or ``(H, W)`` model input size.
        batch_size: examples per batch.
        training: if True, shuffle and (when ``augment``) apply the scale
            jitter, the SSD random crop and a random horizontal flip, each
            as switched; the dataset is not repeated (``fit`` runs epochs).
        shuffle_buffer: shuffle buffer size (training only).
        augment: apply augmentation when training.
        seed: seeds the shuffle and the per-example crop seeds; ``None`` for
            fresh randomness.
        drop_remainder: default ``training``, so training batches have a static
            batch dimension.
        crop_box_rule: which boxes survive the SSD random crop: ``"overlap"``
            (the TF Object Detection API's rule) or ``"centre"`` (the SSD
            paper's wording); see :func:`keras_pyramids.data.augment.crop_boxes`.
        flip: random horizontal flips (off for classes a mirror changes).
        ssd_crop: SSD random crop.
        scale_jitter: ``(min, max)`` factors of
            :func:`~keras_pyramids.data.augment.random_scale_jitter`, or ``None``.
        cache: keep the decoded source examples in memory after the first
            pass, so later epochs do not decode the image files again (the
            random shuffle, crops and flips still differ every epoch).

    Returns:
        ``tf.data.Dataset`` of ``(images float32 [B, H, W, 3] in 0..255,
        {"boxes": float32 [B, N, 4], "classes": int32 [B, N]})``.
    """
    dataset = _as_examples(examples)
    image_shape = to_hw(image_size)
    if crop_box_rule not in augment_lib.BOX_RULES:
        raise ValueError(f"crop_box_rule must be one of {augment_lib.BOX_RULES}; got {crop_box_rule!r}.")
    if drop_remainder is None:
        drop_remainder = bool(training)
    use_augment = bool(training and augment)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    flip_layer = augment_lib.make_random_flip(seed) if use_augment and flip else None
    if scale_jitter is not None:
        low, high = (float(v) for v in scale_jitter)
        if not 0 < low <= high:
            raise ValueError(f"scale_jitter needs 0 < min <= max; got {list(scale_jitter)}.")
    # One independent [2] seed per example for the stateless crop ops, so the
    # crops are reproducible for a given `seed` despite parallel mapping.
    crop_seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    dataset = tf.data.Dataset.zip(dataset, crop_seeds)

    def prepare(example, crop_seed):
        image = example["image"]
        boxes = tf.reshape(tf.cast(example["boxes"], tf.float32), [-1, 4])
        classes = tf.reshape(tf.cast(example["classes"], tf.int32), [-1])
        if use_augment and scale_jitter is not None:
            # Its own seed from the example's, so switching the jitter on or off leaves the crops as they were.
            jitter_seed = tf.random.experimental.stateless_fold_in(crop_seed, 1)
            image, boxes, classes = augment_lib.random_scale_jitter(image, boxes, classes, scale_jitter,
                                                                    image_shape, jitter_seed)
        if use_augment and ssd_crop:
            image, boxes, classes = augment_lib.ssd_random_crop(image, boxes, classes, crop_seed,
                                                                box_rule=crop_box_rule)
        if flip_layer is not None:
            image, boxes, classes = augment_lib.random_horizontal_flip(
                image, boxes, classes, flip_layer
            )
        image = resize_image(image, image_shape)
        image.set_shape(image_shape + (3,))
        targets = target_assigner(boxes, classes)
        box_targets = tf.cast(targets["boxes"], tf.float32)
        class_targets = tf.cast(targets["classes"], tf.int32)
        # The matcher's tf.cond (no-box branch) hides the anchor count from
        # shape inference; restore it so batches are fully static.
        num_anchors = box_targets.shape[0]
        class_targets.set_shape([num_anchors])
        targets = {"boxes": box_targets, "classes": class_targets}
        return image, targets

    # Order only matters for evaluation or when a seed asks for reproducibility;
    # otherwise let fast examples overtake slow ones.
    dataset = dataset.map(
        prepare,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=(not training) or seed is not None,
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_inference_pipeline(examples, image_size, batch_size):
    """Batches of resized images with what evaluation needs to map back, in order.

    Returns:
        ``tf.data.Dataset`` of ``(images float32 [B, H, W, 3] in 0..255,
        {"image_id": int64 [B], "original_size": int32 [B, 2] (H, W)})``; the
        last batch may be smaller.
    """
    dataset = _as_examples(examples)
    image_shape = to_hw(image_size)

    def prepare(example):
        image = example["image"]
        original_size = tf.shape(image, out_type=tf.int32)[:2]
        image = resize_image(image, image_shape)
        image.set_shape(image_shape + (3,))
        return image, {
            "image_id": tf.cast(example["image_id"], tf.int64),
            "original_size": original_size,
        }

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
