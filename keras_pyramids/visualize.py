"""Drawing detections (and ground truth) on images and saving a PNG grid, with Pillow.

Boxes are normalised ``[ymin, xmin, ymax, xmax]`` as everywhere in the zoo, so
detections of a model with a fixed input size are drawn directly on the
original images.
"""

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct colours for classes (Tableau 10), cycled.
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
_GROUND_TRUTH_COLOUR = (255, 255, 255)


def class_colour(class_id):
    """RGB colour of 0-based class ``class_id``."""
    return _PALETTE[int(class_id) % len(_PALETTE)]


def _label(class_id, class_names, score=None):
    name = class_names[class_id] if class_names is not None and 0 <= class_id < len(class_names) \
        else str(class_id)
    return name if score is None else f"{name} {score:.2f}"


def draw_detections(image, boxes, classes, scores=None, class_names=None, score_threshold=0.3,
                    gt_boxes=None, gt_classes=None, line_width=2):
    """Returns a copy of ``image`` with boxes and labels drawn on it.

    Args:
        image: uint8 ``[H, W, 3]`` array or ``PIL.Image``.
        boxes: ``[K, 4]`` normalised ``[ymin, xmin, ymax, xmax]`` detections.
        classes: ``[K]`` 0-based class indices.
        scores: ``[K]`` scores; detections below ``score_threshold`` are skipped.
            ``None`` draws every box without a score.
        class_names: names of the class indices (indices are shown otherwise).
        gt_boxes, gt_classes: optional ground truth, drawn first in white with a
            thin line so detections stay readable on top of it.
        line_width: box outline width in pixels.

    Returns:
        ``PIL.Image`` (RGB).
    """
    canvas = Image.fromarray(np.asarray(image, np.uint8)) if not isinstance(image, Image.Image) \
        else image.copy()
    canvas = canvas.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    width, height = canvas.size
    scale = np.array([height, width, height, width], np.float64)

    def box_pixels(box):
        ymin, xmin, ymax, xmax = np.clip(np.asarray(box, np.float64), 0.0, 1.0) * scale
        return xmin, ymin, xmax, ymax

    if gt_boxes is not None:
        gt_classes = gt_classes if gt_classes is not None else [None] * len(gt_boxes)
        for box, cls in zip(np.asarray(gt_boxes).reshape(-1, 4), gt_classes):
            draw.rectangle(box_pixels(box), outline=_GROUND_TRUTH_COLOUR, width=1)

    boxes = np.asarray(boxes).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    scores = None if scores is None else np.asarray(scores).reshape(-1)
    # Draw low scores first so the most confident boxes end on top.
    order = np.argsort(scores) if scores is not None else np.arange(len(boxes))
    for i in order:
        if scores is not None and scores[i] < score_threshold:
            continue
        colour = class_colour(classes[i])
        x0, y0, x1, y1 = box_pixels(boxes[i])
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line_width)
        text = _label(int(classes[i]), class_names, None if scores is None else float(scores[i]))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_h = bottom - top + 2
        # Label above the box, or inside it when the box touches the top edge.
        ty = y0 - text_h if y0 - text_h >= 0 else y0
        draw.rectangle((x0, ty, x0 + right - left + 4, ty + text_h), fill=colour)
        draw.text((x0 + 2, ty), text, fill=(255, 255, 255), font=font)
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
    from keras_pyramids.data import make_inference_pipeline

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
