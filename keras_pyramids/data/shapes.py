"""Built-in offline detection datasets: coloured shapes (or glyphs) on textured backgrounds.

Every image is drawn with numpy from a seed, so the dataset needs no files and
no network and is identical on every machine. It is made for the README's
"train from scratch on CPU" command: objects are solid filled shapes with good
contrast against a textured, noisy background (learnable in minutes), but the
classes differ only by shape (colours are random for every object), sizes span
``min_size`` (~8 % of the image side, where the fine pyramid levels matter) to
``max_size`` (~70 %, the coarse levels), and an image holds 0 to
``max_objects`` objects (some images have none).

Boxes are computed from the drawn pixels, so each box tightly encloses its
object. Objects never overlap (their boxes are at least ``_GAP`` pixels apart),
so no object is occluded and every box is fully supported by visible pixels.

Each split has its own seed stream derived from the base seed
(``SeedSequence([seed, split_code, index])``), so splits never share images and
image ``i`` of a split does not depend on ``num_examples``.

The ``"glyphs"`` style (:func:`load_glyphs`, dataset name ``glyphs``) is the
small-object check of issue 16: eight glyph classes of which six are three
mirror pairs (``triangle_left`` / ``triangle_right``, ``L`` / ``J``, ``S`` /
``Z``: a horizontal flip changes their class, so flip augmentation must be
switched off for them), objects from about 13 to 100 pixels on 256-pixel
images with sizes drawn log-uniformly (most are COCO "small", under 32x32
pixels), non-square boxes (L/J are 2:3, S/Z 3:2), lower contrast and three
times the sensor noise of ``shapes``.
"""

import dataclasses

import functools
import os

import numpy as np
import tensorflow as tf

from keras_pyramids.data import coco_format
from keras_pyramids.data.dataset import DetectionDataset

CLASS_NAMES = ("circle", "square", "triangle", "cross")
GLYPH_CLASS_NAMES = ("triangle_left", "triangle_right", "L", "J", "S", "Z", "ring", "plus")
# Mirror pairs of GLYPH_CLASS_NAMES: a horizontal flip turns one into the other.
GLYPH_MIRRORS = {"triangle_left": "triangle_right", "triangle_right": "triangle_left",
                 "L": "J", "J": "L", "S": "Z", "Z": "S"}
# Box height : width of each glyph (the longer side is the drawn size).
_GLYPH_ASPECT = {"L": (3, 2), "J": (3, 2), "S": (2, 3), "Z": (2, 3)}
SPLITS = {"train": 0, "validation": 1, "test": 2}
DEFAULT_NUM_EXAMPLES = {"train": 2000, "validation": 200, "test": 200}
DEFAULT_IMAGE_SIZE = 256
DEFAULT_SEED = 0
DEFAULT_MIN_SIZE = 0.08
DEFAULT_MAX_SIZE = 0.7
DEFAULT_MAX_OBJECTS = 5
DEFAULT_EMPTY_FRACTION = 0.05

# Pixels kept free between two objects' boxes.
_GAP = 2
_LUMA = np.array([0.299, 0.587, 0.114])


def _unit_grid(height, width):
    """Pixel centres ``(i + 0.5) / n`` of a ``height x width`` box in unit coordinates, as ``(y [h, 1], x [1, w])``."""
    return (np.arange(height) + 0.5)[:, None] / height, (np.arange(width) + 0.5)[None, :] / width


def _shape_mask(class_id, side):
    """Boolean ``[side, side]`` mask of one shape filling a ``side``-pixel square."""
    y, x = _unit_grid(side, side)
    name = CLASS_NAMES[class_id]
    if name == "circle":
        return (y - 0.5) ** 2 + (x - 0.5) ** 2 <= 0.25
    if name == "square":
        return np.ones((side, side), bool)
    if name == "triangle":
        # Isosceles, apex at the top centre, base along the bottom edge.
        return np.broadcast_to(y >= np.abs(2.0 * x - 1.0), (side, side))
    if name == "cross":
        # A plus sign with arms one third of the side thick.
        return (np.abs(y - 0.5) <= 1.0 / 6.0) | (np.abs(x - 0.5) <= 1.0 / 6.0)
    raise ValueError(f"Unknown shape class {class_id}.")


def _glyph_mask(class_id, height, width):
    """Boolean ``[height, width]`` mask of one glyph filling its box."""
    y, x = _unit_grid(height, width)
    name = GLYPH_CLASS_NAMES[class_id]
    shape = (height, width)
    if name == "triangle_right":  # apex at the right edge's middle
        mask = np.abs(2.0 * y - 1.0) <= 1.0 - x
    elif name == "triangle_left":
        mask = np.abs(2.0 * y - 1.0) <= x
    elif name == "L":  # a stem on the left, a foot to the right
        mask = (x < 0.5) | (y >= 2.0 / 3.0)
    elif name == "J":
        mask = (x >= 0.5) | (y >= 2.0 / 3.0)
    elif name == "Z":  # the Z tetromino: top row left, bottom row right
        mask = ((y < 0.5) & (x < 2.0 / 3.0)) | ((y >= 0.5) & (x >= 1.0 / 3.0))
    elif name == "S":
        mask = ((y < 0.5) & (x >= 1.0 / 3.0)) | ((y >= 0.5) & (x < 2.0 / 3.0))
    elif name == "ring":
        radius = (y - 0.5) ** 2 + (x - 0.5) ** 2
        mask = (radius <= 0.25) & (radius >= 0.09)
    elif name == "plus":
        mask = (np.abs(y - 0.5) <= 1.0 / 6.0) | (np.abs(x - 0.5) <= 1.0 / 6.0)
    else:
        raise ValueError(f"Unknown glyph class {class_id}.")
    return np.broadcast_to(mask, shape)


def _glyph_box(class_id, size):
    """``(height, width)`` in pixels of a glyph whose longer side is ``size``."""
    aspect_h, aspect_w = _GLYPH_ASPECT.get(GLYPH_CLASS_NAMES[class_id], (1, 1))
    longer = max(aspect_h, aspect_w)
    return max(3, round(size * aspect_h / longer)), max(3, round(size * aspect_w / longer))


@dataclasses.dataclass(frozen=True)
class Style:
    """What a generated dataset draws: its classes, object sizes, contrast and noise.

    Attributes:
        class_names: the classes.
        mask: ``mask(class_id, height, width) -> bool [height, width]``.
        box: ``box(class_id, size) -> (height, width)`` of an object of drawn size ``size``.
        log_sizes: draw sizes log-uniformly (many small objects) instead of uniformly.
        min_contrast: least luma difference between an object and its background.
        noise: amplitude of the per-pixel noise over everything.
    """

    class_names: tuple
    mask: object
    box: object
    log_sizes: bool
    min_contrast: float
    noise: int


STYLES = {
    "shapes": Style(CLASS_NAMES, lambda c, h, w: _shape_mask(c, h), lambda c, size: (size, size),
                    log_sizes=False, min_contrast=90.0, noise=8),
    "glyphs": Style(GLYPH_CLASS_NAMES, _glyph_mask, _glyph_box, log_sizes=True, min_contrast=60.0, noise=24),
}


def _background(rng, size):
    """``[size, size, 3]`` float32 background: a base colour, a linear gradient and
    blocky low-frequency texture, with its luma (dark or light at random)."""
    dark = rng.random() < 0.5
    base = rng.uniform(15, 95, 3) if dark else rng.uniform(160, 240, 3)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0, 15)
    gradient = (np.cos(angle) * strength) * ramp[:, None] + (np.sin(angle) * strength) * ramp[None, :]
    cell = int(rng.integers(8, 33))
    coarse = rng.normal(0.0, 10.0, (size // cell + 1, size // cell + 1, 3)).astype(np.float32)
    coarse += base.astype(np.float32)
    # One gather upsamples the coarse grid to blocks of `cell` pixels.
    index = np.arange(size) // cell
    image = coarse[index[:, None], index[None, :]]
    image += gradient[:, :, None]
    return image, float(base @ _LUMA)


def _object_colour(rng, background_luma, min_contrast):
    """A random RGB colour whose luma differs from the background's by at least
    ``min_contrast`` (so the objects stay visible through the background texture)."""
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if abs(colour @ _LUMA - background_luma) >= min_contrast:
            return colour
    # Fallback (rare): a grey on the far side of the luma range.
    return np.full(3, 15.0 if background_luma > 127 else 240.0)


def render_example(
    rng, image_size, min_size, max_size, max_objects, empty_fraction, return_masks=False, style="shapes"
):
    """Draws one image in ``style`` (a name in :data:`STYLES`).

    Returns:
        ``(image uint8 [S, S, 3], boxes float32 [M, 4] normalised yxyx,
        classes int32 [M])``, plus ``masks bool [M, S, S]`` (each object's
        drawn pixels) if ``return_masks``.
    """
    style = STYLES[style]
    image, background_luma = _background(rng, image_size)
    if rng.random() < empty_fraction:
        wanted = 0
    else:
        wanted = int(rng.integers(1, max_objects + 1))
    placed = []  # [top, left, bottom, right) in pixels, for the overlap test
    boxes, classes, masks = [], [], []
    for _ in range(wanted):
        class_id = int(rng.integers(len(style.class_names)))
        if style.log_sizes:
            size = np.exp(rng.uniform(np.log(min_size), np.log(max_size)))
        else:
            size = rng.uniform(min_size, max_size)
        side = max(4, min(int(round(size * image_size)), image_size))
        height, width = style.box(class_id, side)
        # Rejection sampling of the position keeps objects apart; big objects
        # leave little room, so an image may end up with fewer than `wanted`.
        for _attempt in range(30):
            top = int(rng.integers(0, image_size - height + 1))
            left = int(rng.integers(0, image_size - width + 1))
            if all(
                top >= b + _GAP or top + height + _GAP <= t or left >= r + _GAP or left + width + _GAP <= l
                for t, l, b, r in placed
            ):
                break
        else:
            continue
        mask = style.mask(class_id, height, width)
        image[top : top + height, left : left + width][mask] = _object_colour(rng, background_luma,
                                                                              style.min_contrast)
        placed.append((top, left, top + height, left + width))
        if return_masks:
            full = np.zeros((image_size, image_size), bool)
            full[top : top + height, left : left + width] = mask
            masks.append(full)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes.append(
            [
                (top + rows[0]) / image_size,
                (left + cols[0]) / image_size,
                (top + rows[-1] + 1) / image_size,
                (left + cols[-1] + 1) / image_size,
            ]
        )
        classes.append(class_id)
    # Fine sensor-like noise over everything, objects included.
    image += rng.integers(-style.noise, style.noise + 1, (image_size, image_size, 1), dtype=np.int8)
    np.clip(image, 0, 255, out=image)
    image = image.astype(np.uint8)
    result = (image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int32))
    if return_masks:
        result += (np.asarray(masks, bool).reshape(-1, image_size, image_size),)
    return result


def example_rng(seed, split, index):
    """The random generator of image ``index`` of ``split``: its own seed
    stream, so images do not depend on each other or on the split size."""
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


@functools.lru_cache(maxsize=8)
def generate_split(
    split,
    num_examples,
    image_size=DEFAULT_IMAGE_SIZE,
    seed=DEFAULT_SEED,
    min_size=DEFAULT_MIN_SIZE,
    max_size=DEFAULT_MAX_SIZE,
    max_objects=DEFAULT_MAX_OBJECTS,
    empty_fraction=DEFAULT_EMPTY_FRACTION,
    style="shapes",
):
    """Generates (and caches in memory) a whole split as numpy arrays in ``style``.

    Returns:
        ``(images uint8 [N, S, S, 3], boxes list of float32 [M_i, 4],
        classes list of int32 [M_i])``.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown shapes split {split!r}; known splits: {', '.join(SPLITS)}.")
    if style not in STYLES:
        raise ValueError(f"Unknown style {style!r}; known styles: {', '.join(STYLES)}.")
    if not 0 < min_size <= max_size <= 1:
        raise ValueError(f"Need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}.")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}.")
    if num_examples < 0 or image_size < 16:
        raise ValueError(
            f"Need num_examples >= 0 and image_size >= 16, got {num_examples}, {image_size}."
        )
    images = np.empty((num_examples, image_size, image_size, 3), np.uint8)
    boxes, classes = [], []
    for index in range(num_examples):
        rng = example_rng(seed, split, index)
        images[index], image_boxes, image_classes = render_example(
            rng, image_size, min_size, max_size, max_objects, empty_fraction, style=style
        )
        boxes.append(image_boxes)
        classes.append(image_classes)
    images.setflags(write=False)  # shared through the cache
    return images, tuple(boxes), tuple(classes)


def _cached_on_disk(cache_dir, split, num_examples, image_size, seed, options):
    """Loads the split from ``cache_dir`` if a cache file for exactly these
    settings exists, else generates it and writes that file (never replacing an
    existing one)."""
    # The shapes style keeps the file names it had before styles existed.
    key = "_".join(f"{k}{v}" for k, v in sorted(options.items()) if (k, v) != ("style", "shapes"))
    path = os.path.join(
        cache_dir, f"shapes_v1_{split}_n{num_examples}_s{image_size}_seed{seed}_{key}.npz"
    )
    if os.path.exists(path):
        with np.load(path) as data:
            lengths = data["lengths"]
            splits = np.cumsum(lengths)[:-1]
            return (
                data["images"],
                tuple(np.split(data["boxes"], splits)),
                tuple(np.split(data["classes"], splits)),
            )
    images, boxes, classes = generate_split(split, num_examples, image_size, seed, **options)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(
        tmp,
        images=images,
        boxes=np.concatenate(boxes).reshape(-1, 4),
        classes=np.concatenate(classes),
        lengths=np.array([len(c) for c in classes]),
    )
    os.replace(tmp, path)
    return images, boxes, classes


def _examples_from_arrays(images, boxes, classes):
    """``tf.data`` view of the in-memory arrays, one source example per index.

    Examples are fetched with ``tf.numpy_function`` rather than
    ``from_tensor_slices`` because the latter copies the whole image array
    (~400 MB for the default train split) into a tensor, which takes longer
    than generating it.
    """

    def fetch(index):
        return images[index], boxes[index], classes[index]

    def to_example(index):
        image, image_boxes, image_classes = tf.numpy_function(
            fetch, [index], [tf.uint8, tf.float32, tf.int32], stateful=False
        )
        image.set_shape(images.shape[1:])
        image_boxes.set_shape([None, 4])
        image_classes.set_shape([None])
        return {"image": image, "boxes": image_boxes, "classes": image_classes, "image_id": index + 1}

    return (
        tf.data.Dataset.range(len(images))
        .map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .apply(tf.data.experimental.assert_cardinality(len(images)))
    )


def load_shapes(
    split="train",
    num_examples=None,
    image_size=DEFAULT_IMAGE_SIZE,
    seed=DEFAULT_SEED,
    min_size=DEFAULT_MIN_SIZE,
    max_size=DEFAULT_MAX_SIZE,
    max_objects=DEFAULT_MAX_OBJECTS,
    empty_fraction=DEFAULT_EMPTY_FRACTION,
    cache_dir=None,
    style="shapes",
):
    """The built-in shapes dataset as a :class:`DetectionDataset`.

    Args:
        split: ``"train"`` (default 2000 images), ``"validation"`` or ``"test"``
            (200 each); each split has its own seed stream.
        num_examples: number of images (default per split as above).
        image_size: side of the square images in pixels.
        seed: base seed.
        min_size, max_size: object side as a fraction of the image side, drawn
            uniformly in this range.
        max_objects: at most this many objects per image (fewer when large
            objects leave no room).
        empty_fraction: probability that an image has no objects.
        cache_dir: optional directory for an ``.npz`` cache of the split
            (generation is fast, so this is only for repeated runs).
        style: ``"shapes"``, or ``"glyphs"`` (:func:`load_glyphs` has its defaults).

    Returns:
        :class:`DetectionDataset` with classes ``circle, square, triangle,
        cross`` (glyphs: :data:`GLYPH_CLASS_NAMES`); ``image_id`` is ``index + 1``.
    """
    if num_examples is None:
        if split not in DEFAULT_NUM_EXAMPLES:
            raise ValueError(f"Unknown shapes split {split!r}; known splits: {', '.join(SPLITS)}.")
        num_examples = DEFAULT_NUM_EXAMPLES[split]
    options = dict(
        min_size=float(min_size),
        max_size=float(max_size),
        max_objects=int(max_objects),
        empty_fraction=float(empty_fraction),
        style=str(style),
    )
    if style not in STYLES:
        raise ValueError(f"Unknown style {style!r}; known styles: {', '.join(STYLES)}.")
    class_names = STYLES[style].class_names
    if cache_dir is not None:
        images, boxes, classes = _cached_on_disk(
            cache_dir, split, int(num_examples), int(image_size), int(seed), options
        )
    else:
        images, boxes, classes = generate_split(
            split, int(num_examples), int(image_size), int(seed), **options
        )
    examples = _examples_from_arrays(images, boxes, classes)
    category_ids = list(range(len(class_names)))
    image_ids = np.arange(1, len(images) + 1)
    sizes = [images.shape[1:3]] * len(images)
    # Image i of a split depends only on the seed, the split and the drawing
    # settings, not on num_examples: splits of different sizes share a prefix.
    collection = ("shapes", split, int(seed), int(image_size), tuple(sorted(options.items())))
    return DetectionDataset(
        examples=examples,
        class_names=list(class_names),
        category_ids=category_ids,
        num_examples=len(images),
        ground_truth_fn=lambda: coco_format.ground_truth_from_arrays(
            image_ids, sizes, boxes, classes, category_ids, class_names
        ),
        image_source=((collection, 0, len(images)),),
        description=f"{style} split {split!r}",
    )


GLYPHS_NUM_EXAMPLES = {"train": 1000, "validation": 200, "test": 200}


def load_glyphs(
    split="train",
    num_examples=None,
    image_size=256,
    seed=DEFAULT_SEED,
    min_size=0.05,
    max_size=0.4,
    max_objects=6,
    empty_fraction=DEFAULT_EMPTY_FRACTION,
    cache_dir=None,
):
    """The built-in small-object dataset (dataset name ``glyphs``): the ``"glyphs"`` style of
    :func:`load_shapes` (see the module docstring) with its own defaults.

    Args:
        split: ``"train"`` (default 1000 images), ``"validation"`` or ``"test"`` (200 each).
        min_size, max_size: the longer side of an object as a fraction of the
            image side, drawn log-uniformly (13 to 102 pixels at 256).
        The rest as :func:`load_shapes`.

    Returns:
        :class:`DetectionDataset` with classes :data:`GLYPH_CLASS_NAMES`.
    """
    if num_examples is None:
        if split not in GLYPHS_NUM_EXAMPLES:
            raise ValueError(f"Unknown glyphs split {split!r}; known splits: {', '.join(SPLITS)}.")
        num_examples = GLYPHS_NUM_EXAMPLES[split]
    return load_shapes(split, num_examples, image_size, seed, min_size, max_size, max_objects,
                       empty_fraction, cache_dir, style="glyphs")
