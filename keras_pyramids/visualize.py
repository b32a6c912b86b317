"""Drawing detections (and ground truth) on images and saving a PNG grid, with Pillow.

Boxes are normalised ``[ymin, xmin, ymax, xmax]`` as everywhere in the zoo, so
detections of a model with a fixed input size are drawn directly on the
original images.
"""

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_pyramids.data import make_inference_pipeline

# Distinct colours for classes (Tableau 10), cycled.
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
_GROUND_TRUTH_COLOUR = (255, 255, 255)


def class_colour(class_id):
    """RGB colour of 0-based class ``class_id``."""
    return _PALETTE[int(class_id) % len(_PALETTE)]


def text_colour(background):
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    red, green, blue = background[:3]
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def _label(class_id, class_names, score=None):
    name = class_names[class_id] if class_names is not None and 0 <= class_id < len(class_names) \
        else str(class_id)
    return name if score is None else f"{name} {score:.2f}"


def _overlap(a, b):
    """Intersection area of two ``(x0, y0, x1, y1)`` rectangles (``x1``, ``y1`` exclusive)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# Rows of label height a label may move away from its box's edge to find free space.
_MAX_LABEL_SHIFT = 3


def layout_labels(boxes, label_sizes, image_size):
    """Places one label rectangle per box so labels do not cover each other or their own box.

    Boxes are placed in the given order (most important first). Each label
    tries, in order: above the box at its left corner, above at its right
    corner, below at its left corner, below at its right corner, the same one,
    two and three label rows further out, and last inside the box's top-left
    corner. It takes the first place that is inside the image and overlaps no
    label placed before it, its own box or any other box; when every place
    overlaps something, the one with the least weighted overlap (own box 10,
    other boxes 1 per pixel) among those that cover no earlier label. When
    every place covers an earlier label (a crowded picture), the label is left
    out (``None``): the box is still drawn in its class colour.

    Args:
        boxes: ``[K, 4]`` pixel ``(x0, y0, x1, y1)`` of the boxes, corners
            included in the box (an outline of width ``w`` drawn by Pillow covers
            ``[x0, x0 + w)``), so a label ending at ``y0`` does not cover it.
        label_sizes: ``[K]`` ``(width, height)`` of each label in pixels.
        image_size: ``(width, height)`` of the picture.

    Returns:
        list of ``K`` label rectangles ``(x0, y0, x1, y1)`` (``x1``, ``y1``
        exclusive) inside the image, or ``None`` for a label left out.
    """
    image_w, image_h = image_size
    boxes = [tuple(float(v) for v in box) for box in np.asarray(boxes, np.float64).reshape(-1, 4)]
    # Own box including its far outline pixel (Pillow draws x1 and y1 inclusive).
    solid = [(x0, y0, x1 + 1, y1 + 1) for x0, y0, x1, y1 in boxes]
    placed = []
    for index, ((x0, y0, x1, y1), (width, height)) in enumerate(zip(boxes, label_sizes)):
        width, height = float(min(width, image_w)), float(min(height, image_h))
        candidates = []
        for step in range(_MAX_LABEL_SHIFT + 1):
            above, below = y0 - (step + 1) * height, y1 + 1 + step * height
            for top in (above, below):
                for left in (x0, x1 + 1 - width):
                    candidates.append((left, top))
        candidates.append((x0 + 1, y0 + 1))
        best, best_cost = None, None
        for left, top in candidates:
            if top < 0 or top + height > image_h:
                continue
            left = min(max(left, 0.0), image_w - width)
            rect = (left, top, left + width, top + height)
            if any(_overlap(rect, other) > 0 for other in placed if other is not None):
                continue
            cost = (10 * _overlap(rect, solid[index])
                    + sum(_overlap(rect, box) for i, box in enumerate(solid) if i != index))
            if best_cost is None or cost < best_cost:
                best, best_cost = rect, cost
            if cost == 0:
                break
        placed.append(best)
    return placed


def _font(image_size):
    """Pillow's own font (no file needed) at a size that stays legible on ``image_size`` (W, H)."""
    size = int(np.clip(round(min(image_size) * 0.035), 11, 40))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def draw_detections(image, boxes, classes, scores=None, class_names=None, score_threshold=0.3,
                    gt_boxes=None, gt_classes=None, line_width=None):
    """Returns a copy of ``image`` with boxes and labels drawn on it.

    Labels (class name and score) are placed by :func:`layout_labels`: the
    most confident detections first, each label outside its box when there is
    room and never on another label.

    Args:
        image: uint8 ``[H, W, 3]`` array or ``PIL.Image``.
        boxes: ``[K, 4]`` normalised ``[ymin, xmin, ymax, xmax]`` detections.
        classes: ``[K]`` 0-based class indices.
        scores: ``[K]`` scores; detections below ``score_threshold`` are skipped.
            ``None`` draws every box without a score.
        class_names: names of the class indices (indices are shown otherwise).
        gt_boxes, gt_classes: optional ground truth, drawn first in white with a
            thin line so detections stay readable on top of it.
        line_width: box outline width in pixels (default: grows with the image,
            2 px up to 600 px).

    Returns:
        ``PIL.Image`` (RGB).
    """
    canvas = Image.fromarray(np.asarray(image, np.uint8)) if not isinstance(image, Image.Image) \
        else image.copy()
    canvas = canvas.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    font = _font((width, height))
    if line_width is None:
        line_width = max(2, round(min(width, height) / 300))
    scale = np.array([height, width, height, width], np.float64)

    def box_pixels(box):
        ymin, xmin, ymax, xmax = np.clip(np.asarray(box, np.float64), 0.0, 1.0) * scale
        return xmin, ymin, xmax, ymax

    if gt_boxes is not None:
        for box in np.asarray(gt_boxes).reshape(-1, 4):
            draw.rectangle(box_pixels(box), outline=_GROUND_TRUTH_COLOUR, width=1)

    boxes = np.asarray(boxes).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    scores = None if scores is None else np.asarray(scores).reshape(-1)
    # Most confident first: they get the best label places.
    order = np.argsort(-scores, kind="stable") if scores is not None else np.arange(len(boxes))
    if scores is not None:
        order = [i for i in order if scores[i] >= score_threshold]
    pixel_boxes = [box_pixels(boxes[i]) for i in order]
    texts = [_label(int(classes[i]), class_names, None if scores is None else float(scores[i]))
             for i in order]
    padding = 2
    sizes = []
    for text in texts:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        sizes.append((right - left + 2 * padding, bottom - top + 2 * padding))
    labels = layout_labels(pixel_boxes, sizes, (width, height))
    # Boxes first, then every label on top, so no outline crosses a label; the
    # least confident box is drawn first so the most confident outline is on top.
    for i, box in reversed(list(zip(order, pixel_boxes))):
        draw.rectangle(box, outline=class_colour(classes[i]), width=line_width)
    for i, text, rect in zip(order, texts, labels):
        if rect is None:  # no free place in a crowded picture
            continue
        colour = class_colour(classes[i])
        # Pillow's rectangle includes its far corner; the layout's is exclusive.
        draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=colour)
        left, top, _, _ = draw.textbbox((0, 0), text, font=font)
        draw.text((rect[0] + padding - left, rect[1] + padding - top), text,
                  fill=text_colour(colour), font=font)
    return canvas


def image_grid(images, columns=3, padding=4, background=(32, 32, 32)):
    """Tiles PIL images (resized to the first one's size) into one image."""
    if not images:
        raise ValueError("image_grid needs at least one image.")
    columns = max(1, min(int(columns), len(images)))
    rows = -(-len(images) // columns)
    cell_w, cell_h = images[0].size
    grid = Image.new("RGB", (columns * cell_w + (columns + 1) * padding,
                             rows * cell_h + (rows + 1) * padding), background)
    for index, image in enumerate(images):
        if image.size != (cell_w, cell_h):
            image = image.resize((cell_w, cell_h))
        row, col = divmod(index, columns)
        grid.paste(image, (padding + col * (cell_w + padding), padding + row * (cell_h + padding)))
    return grid


def save_png(image, path, overwrite=False):
    """Saves ``image`` as PNG at ``path``; refuses to replace an existing file unless ``overwrite``."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; not overwriting it.")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    image.save(path, format="PNG")
    return path


def save_detections_png(model, dataset, path, num_images=6, columns=3, score_threshold=0.3,
                        show_ground_truth=True, overwrite=False, min_cell_size=256):
    """Runs ``model`` on the first ``num_images`` examples of ``dataset`` and saves a PNG grid.

    Args:
        model: a ``Detector`` (``image_size``, ``predict_on_batch`` returning the
            detection dict).
        dataset: a ``DetectionDataset`` (use a held-out split); its
            ``class_names`` label the boxes.
        path: output PNG path.
        num_images: number of images in the grid.
        columns: grid columns.
        score_threshold: detections below this score are not drawn.
        show_ground_truth: also draw the ground-truth boxes (thin, white).
        overwrite: replace an existing file at ``path``.
        min_cell_size: small images are enlarged (nearest neighbour) to at least
            this size so labels stay legible.

    Returns:
        ``path``.
    """
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; not overwriting it.")
    examples = dataset.examples.take(int(num_images))
    originals = [
        {key: np.asarray(value) for key, value in example.items()}
        for example in examples.as_numpy_iterator()
    ]
    if not originals:
        raise ValueError("The dataset has no examples to draw.")
    batches = make_inference_pipeline(examples, model.image_size, len(originals))
    images, _ = next(iter(batches))
    detections = {k: np.asarray(v) for k, v in model.predict_on_batch(images).items()}
    cells = []
    for i, example in enumerate(originals):
        image = Image.fromarray(example["image"])
        side = min(image.size)
        if side < min_cell_size:
            factor = -(-min_cell_size // side)
            image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
        n = int(detections["num_detections"][i])
        cells.append(draw_detections(
            image, detections["boxes"][i, :n], detections["classes"][i, :n],
            detections["scores"][i, :n], class_names=getattr(dataset, "class_names", None),
            score_threshold=score_threshold,
            gt_boxes=example.get("boxes") if show_ground_truth else None,
            gt_classes=example.get("classes") if show_ground_truth else None,
        ))
    return save_png(image_grid(cells, columns), path, overwrite=overwrite)
