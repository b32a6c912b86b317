"""Offline crop-classification data: one coloured shape per image, label = shape class.

A small deterministic stand-in for ImageNet crops when experimenting with
SPP-net classifiers (multi-size training, multi-view testing) on a CPU with no
network. Every image is drawn with numpy from a seed: a noisy background of a
random colour, and one shape (:data:`CLASS_NAMES`) of random size, colour,
position and rotation. Image heights and widths vary independently, so the
data exercises the "any input size" property of SPP.

The same ``seed`` always gives the same images; the train and held-out splits
are drawn from independent streams of that seed.
"""

import numpy as np
import tensorflow as tf

CLASS_NAMES = ("disc", "square", "triangle", "plus", "ring")
NUM_CLASSES = len(CLASS_NAMES)

_TRAIN_STREAM, _TEST_STREAM = 0, 1
_MIN_CONTRAST = 90.0  # Euclidean RGB distance between shape and background colours


def _shape_mask(name, u, v, radius):
    """Boolean mask of shape ``name`` in rotated coordinates ``u, v`` around its centre."""
    dist = np.hypot(u, v)
    if name == "disc":
        return dist <= radius
    if name == "ring":
        return (dist <= radius) & (dist >= 0.55 * radius)
    if name == "square":
        half = 0.8 * radius
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if name == "plus":
        arm = 0.3 * radius
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | (
            (np.abs(v) <= arm) & (np.abs(u) <= radius)
        )
    if name == "triangle":
        # Equilateral triangle of circumradius r: inside all three half-planes
        # whose boundaries lie at the inradius r / 2.
        inside = np.ones(u.shape, bool)
        for k in range(3):
            angle = np.pi / 2 + 2 * np.pi * k / 3
            inside &= u * np.cos(angle) + v * np.sin(angle) >= -radius / 2
        return inside
    raise ValueError(f"Unknown shape {name!r}; known: {CLASS_NAMES}.")


def _two_colours(rng):
    while True:
        background, foreground = rng.uniform(0, 255, size=(2, 3))
        if np.linalg.norm(background - foreground) >= _MIN_CONTRAST:
            return background, foreground


def draw_crop(rng, height, width, label, noise=24.0):
    """Draws one ``[height, width, 3]`` uint8 image of class ``label`` with ``rng``."""
    background, foreground = _two_colours(rng)
    radius = rng.uniform(0.22, 0.42) * min(height, width)
    # Keep the whole shape inside the image, so the label is always visible.
    cy = rng.uniform(radius, height - radius)
    cx = rng.uniform(radius, width - radius)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    mask = _shape_mask(CLASS_NAMES[label], u, v, radius)
    image = np.where(mask[..., None], foreground, background)
    image = image + rng.normal(0.0, noise, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_crops(num_images, seed=0, stream=_TRAIN_STREAM, min_size=48, max_size=112):
    """Returns ``(images, labels)``: a list of uint8 ``[H, W, 3]`` arrays and int32 labels.

    ``H`` and ``W`` are drawn independently and uniformly from
    ``min_size .. max_size``; labels cycle through the classes in a shuffled
    order, so every class appears ``num_images / NUM_CLASSES`` times (+-1).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be positive; got {num_images}.")
    if not 16 <= min_size <= max_size:
        raise ValueError(f"Need 16 <= min_size <= max_size; got {min_size}, {max_size}.")
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(num_images) % NUM_CLASSES).astype(np.int32)
    sizes = rng.integers(min_size, max_size + 1, size=(num_images, 2))
    images = [draw_crop(rng, int(h), int(w), int(k)) for (h, w), k in zip(sizes, labels)]
    return images, labels


def _as_dataset(images, labels):
    def generate():
        for image, label in zip(images, labels):
            yield image.astype(np.float32), label

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((None, None, 3), tf.float32),
            tf.TensorSpec((), tf.int32),
        ),
    )
    # A known length lets Keras size epochs and progress bars without a
    # first pass that "runs out of data".
    return dataset.apply(tf.data.experimental.assert_cardinality(len(images)))


def crop_datasets(num_train=2000, num_test=500, seed=0, min_size=48, max_size=112):
    """Train and held-out ``tf.data.Dataset`` s of ``(image, label)``.

    Images are float32 ``[H, W, 3]`` in ``[0, 255]`` with varying ``H, W``
    (unbatched: resize before batching, e.g. with
    :func:`keras_pyramids.training.multisize.resize_images`); labels are int32
    indices into :data:`CLASS_NAMES`. The data is generated once in memory;
    iterating the datasets again yields the same elements in the same order.
    """
    train = make_crops(num_train, seed, _TRAIN_STREAM, min_size, max_size)
    test = make_crops(num_test, seed, _TEST_STREAM, min_size, max_size)
    return _as_dataset(*train), _as_dataset(*test)
