"""Running a trained detector on image files: one picture and one COCO results JSON per image.

:func:`predict_files` (``keras-pyramids predict``) takes JPEG / PNG files of
any size, and folders of them, and writes for each image ``<stem>.json`` and
``<stem>.png`` into an output folder:

- ``<stem>.json``: the COCO *results* format (what ``COCO.loadRes`` reads and
  the COCO evaluation server takes), a list of ``{"image_id", "category_id",
  "category_name", "bbox": [x, y, width, height] in pixels of the original
  image, "score"}``;
- ``<stem>.png``: the image with the boxes and their labels drawn.

Models: a ``.keras`` detector of any family (through its public protocol:
``model.image_size`` and ``model.predict(images)`` returning normalised boxes)
or a SavedModel written by ``keras-pyramids export`` (its ``serving_default``
takes uint8 images of any size and returns pixel boxes). Images are resized to
the model's input exactly as in training and evaluation (bilinear, aspect ratio
not kept), and the normalised boxes are the same fractions of the original.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_pyramids.categories import Categories, find_categories
from keras_pyramids.data.pipeline import resize_image
from keras_pyramids.progress import Progress
from keras_pyramids.saving import load_model
from keras_pyramids.visualize import draw_detections, save_png

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Pillow's names of the formats read; MPO is the multi-picture JPEG of many phone cameras.
IMAGE_FORMATS = ("JPEG", "PNG", "MPO")
DETECTION_KEYS = ("boxes", "scores", "classes", "num_detections")
DEFAULT_SCORE_THRESHOLD = 0.3


class ImageReadError(ValueError):
    """An input image cannot be read as a JPEG or PNG picture (the message names the file)."""


class NotADetectorError(ValueError):
    """The model given is not a detector (e.g. an SPP-net classifier)."""


# -- images -------------------------------------------------------------------------

def list_images(inputs):
    """The image files named by ``inputs``: files as given, folders' JPEG / PNG files sorted.

    Folders are not searched recursively; hidden files are skipped.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: no image at all.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            paths += sorted(
                os.path.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
                and os.path.isfile(os.path.join(item, name)))
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"Input {item} does not exist.")
    if not paths:
        raise ValueError(f"No JPEG or PNG images ({', '.join(IMAGE_EXTENSIONS)}) in "
                         f"{', '.join(map(os.fspath, inputs))}.")
    return paths


def read_image(path):
    """A JPEG / PNG file as uint8 RGB ``[H, W, 3]``, turned upright by its EXIF orientation.

    Grey, palette and RGBA images become RGB (alpha is dropped).

    Raises:
        ImageReadError: the file is not a readable JPEG or PNG image.
    """
    try:
        with Image.open(path) as image:
            if image.format not in IMAGE_FORMATS:
                raise ImageReadError(f"Cannot read image {path}: it is a {image.format} file; "
                                     "predict reads JPEG and PNG images.")
            image = ImageOps.exif_transpose(image)
            array = np.asarray(image.convert("RGB"), np.uint8)
    except UnidentifiedImageError:
        raise ImageReadError(f"Cannot read image {path}: not a JPEG or PNG image.") from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageReadError):
            raise
        raise ImageReadError(f"Cannot read image {path}: {error}.") from None
    if array.ndim != 3 or 0 in array.shape:
        raise ImageReadError(f"Cannot read image {path}: it is empty ({array.shape}).")
    return array


def output_names(paths):
    """One output stem per input path: the file name without extension, or, for inputs
    that share a stem (``a.jpg`` and ``a.png``), the name with the extension (``a_jpg``).

    Raises:
        ValueError: two inputs have the same file name (e.g. in two folders).
    """
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    names = [stem if stems.count(stem) == 1 else os.path.basename(p).replace(".", "_")
             for stem, p in zip(stems, paths)]
    seen = {}
    for name, path in zip(names, paths):
        if name in seen:
            raise ValueError(f"{seen[name]} and {path} have the same file name; "
                             "predict them into separate output folders.")
        seen[name] = path
    return names


def image_ids(paths):
    """COCO image id of each path: the file names' numbers when every name is a distinct
    number (COCO's ``000000000139.jpg`` -> 139), else the position 1, 2, ... in ``paths``."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(paths) + 1))


# -- models -------------------------------------------------------------------------

class KerasDetector:
    """A ``.keras`` detector behind :meth:`detect` (pixel boxes of original images)."""

    def __init__(self, model, name="the model"):
        if getattr(model, "kind", "detector") != "detector" or getattr(model, "image_size", None) is None:
            raise NotADetectorError(
                f"{name} is not a detector: it has no fixed image_size (an SPP-net classifier "
                "returns class scores, not boxes); predict needs a detector model "
                "(ppn_*, ssd_*, m2det_*).")
        self.model = model
        self.name = name
        self.image_size = tuple(int(v) for v in model.image_size)
        self.num_classes = getattr(model, "num_classes", None)

    def detect(self, images):
        """``images``: list of uint8 ``[H_i, W_i, 3]`` -> list of dicts of numpy ``boxes
        [K, 4]`` pixel ``[ymin, xmin, ymax, xmax]``, ``scores [K]``, ``classes [K]``."""
        batch = np.stack([resize_image(image, self.image_size).numpy() for image in images])
        outputs = self.model.predict(batch, verbose=0)
        if not (isinstance(outputs, dict) and all(k in outputs for k in DETECTION_KEYS)):
            raise NotADetectorError(
                f"{self.name} is not a detector: its predict() returns "
                f"{type(outputs).__name__}, not the detection dict ({', '.join(DETECTION_KEYS)}).")
        outputs = {k: np.asarray(v) for k, v in outputs.items()}
        results = []
        for i, image in enumerate(images):
            n = int(outputs["num_detections"][i])
            height, width = image.shape[:2]
            results.append({
                "boxes": outputs["boxes"][i, :n].astype(np.float64) * [height, width, height, width],
                "scores": outputs["scores"][i, :n].astype(np.float64),
                "classes": outputs["classes"][i, :n].astype(np.int64),
            })
        return results


class SavedModelDetector:
    """A SavedModel of ``keras-pyramids export`` behind :meth:`detect` (its
    ``serving_default``: uint8 images of any size -> pixel boxes)."""

    def __init__(self, path):
        loaded = tf.saved_model.load(path)
        function = loaded.signatures.get("serving_default")
        inputs = function.structured_input_signature[1] if function is not None else {}
        outputs = function.structured_outputs if function is not None else {}
        if ("images" not in inputs or inputs["images"].dtype != tf.uint8
                or not all(k in outputs for k in DETECTION_KEYS)):
            raise NotADetectorError(
                f"{path} is not a detector SavedModel of keras-pyramids export: it needs a "
                f"serving_default(images uint8) returning {', '.join(DETECTION_KEYS)}.")
        self._loaded = loaded  # keeps the function's variables alive
        self._function = function
        self.num_classes = None

    def detect(self, images):
        """As :meth:`KerasDetector.detect`; one call per image (sizes differ)."""
        results = []
        for image in images:
            out = self._function(images=tf.constant(image[None]))
            n = int(out["num_detections"][0])
            results.append({
                "boxes": out["boxes"][0, :n].numpy().astype(np.float64),
                "scores": out["scores"][0, :n].numpy().astype(np.float64),
                "classes": out["classes"][0, :n].numpy().astype(np.int64),
            })
        return results


def load_detector(path):
    """A ``.keras`` file or an exported SavedModel directory as a detector with ``detect``.

    Raises:
        FileNotFoundError: nothing at ``path``.
        NotADetectorError: the model is a classifier or not an exported detector.
        ValueError: neither a ``.keras`` file nor a SavedModel directory.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model {path} does not exist.")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path} is a folder but not a SavedModel (no saved_model.pb).")
        return SavedModelDetector(path)
    return KerasDetector(load_model(path), name=path)


# -- results ------------------------------------------------------------------------

def coco_results(detections, image_id, categories, score_threshold=DEFAULT_SCORE_THRESHOLD):
    """One image's pixel detections as COCO results, the most confident first.

    Args:
        detections: dict ``boxes [K, 4]`` pixel yxyx, ``scores [K]``, ``classes [K]``.
        image_id: the image's COCO id.
        categories: :class:`~keras_pyramids.categories.Categories` of the model.
        score_threshold: detections below it are left out.

    Returns:
        list of ``{"image_id", "category_id", "category_name", "bbox": [x, y, w, h],
        "score"}`` (pixels, rounded to 0.01 px; scores to 5 digits).
    """
    results = []
    order = np.argsort(-np.asarray(detections["scores"]), kind="stable")
    for k in order:
        score = float(detections["scores"][k])
        if score < score_threshold:
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in detections["boxes"][k])
        cls = int(detections["classes"][k])
        results.append({
            "image_id": int(image_id),
            "category_id": categories.id(cls),
            "category_name": categories.name(cls),
            "bbox": [round(xmin, 2), round(ymin, 2), round(xmax - xmin, 2), round(ymax - ymin, 2)],
            "score": round(score, 5),
        })
    return results


def _draw(image, results, categories):
    """The picture of one image's results (labels by :func:`draw_detections`)."""
    height, width = image.shape[:2]
    boxes = np.array([[y / height, x / width, (y + h) / height, (x + w) / width]
                      for x, y, w, h in (r["bbox"] for r in results)], np.float64).reshape(-1, 4)
    class_of_id = {cid: index for index, cid in enumerate(categories.ids)}
    classes = [class_of_id.get(r["category_id"], r["category_id"]) for r in results]
    return draw_detections(image, boxes, classes, [r["score"] for r in results],
                           class_names=categories.names, score_threshold=float("-inf"))


def predict_files(model, inputs, output_dir, score_threshold=DEFAULT_SCORE_THRESHOLD,
                  categories=None, batch_size=8, draw=True, progress=True):
    """Runs a detector on image files and writes one JSON (and one picture) per image.

    Args:
        model: path of a ``.keras`` detector or of an exported SavedModel, or a
            loaded detector (a Keras model with ``image_size``, or the result of
            :func:`load_detector`).
        inputs: image files and / or folders of JPEG / PNG images.
        output_dir: folder for ``<stem>.json`` and ``<stem>.png`` (created if
            needed; existing files are never replaced).
        score_threshold: detections below it are neither written nor drawn.
        categories: :class:`~keras_pyramids.categories.Categories`, or a path to
            a ``categories.json`` or COCO annotations file; default the ones saved
            with the model (``categories.json`` of the training run), else the
            class numbers.
        batch_size: images per ``model.predict`` call (``.keras`` models).
        draw: also write the pictures.
        progress: show a progress bar with the time left.

    Returns:
        list of ``{"image", "image_id", "json", "picture", "detections"}`` per image.

    Raises:
        FileNotFoundError: a missing model or input.
        FileExistsError: an output file exists already (checked before any work).
        ImageReadError: an input is not a readable JPEG / PNG (named).
        NotADetectorError: the model is a classifier.
    """
    paths = list_images(inputs)
    names = output_names(paths)
    ids = image_ids(paths)
    outputs = [(os.path.join(output_dir, n + ".json"), os.path.join(output_dir, n + ".png"))
               for n in names]
    for json_path, picture_path in outputs:
        for path in (json_path, picture_path) if draw else (json_path,):
            if os.path.exists(path):
                raise FileExistsError(f"{path} already exists; not overwriting it "
                                      "(choose another --output folder).")
    if isinstance(model, (str, os.PathLike)):
        model_path = os.fspath(model)
        detector = load_detector(model_path)
        if categories is None:
            categories = find_categories(model_path)
    elif isinstance(model, keras.Model):
        detector = KerasDetector(model, name=model.name)
    else:
        detector = model
    if isinstance(categories, (str, os.PathLike)):
        categories = Categories.load(os.fspath(categories))
    if categories is None:
        categories = Categories.numbered(detector.num_classes or 0)
    elif detector.num_classes is not None and len(categories) != detector.num_classes:
        raise ValueError(f"The model predicts {detector.num_classes} classes but the categories "
                         f"name {len(categories)}.")

    os.makedirs(output_dir, exist_ok=True)
    bar = Progress(len(paths), "image", title="Predicting") if progress else None
    written = []
    for start in range(0, len(paths), max(1, int(batch_size))):
        chunk = range(start, min(start + max(1, int(batch_size)), len(paths)))
        images = [read_image(paths[i]) for i in chunk]
        for i, image, detections in zip(chunk, images, detector.detect(images)):
            results = coco_results(detections, ids[i], categories, score_threshold)
            json_path, picture_path = outputs[i]
            _write_json_new(json_path, results)
            if draw:
                save_png(_draw(image, results, categories), picture_path)
            written.append({"image": paths[i], "image_id": ids[i], "json": json_path,
                            "picture": picture_path if draw else None, "detections": len(results)})
        if bar is not None:
            bar.update(chunk.stop)
    if bar is not None:
        bar.finish()
    return written


def _write_json_new(path, value):
    """Writes JSON to a file that must not exist yet (``x`` mode: never replaces a file)."""
    with open(path, "x") as f:
        json.dump(value, f, indent=1)
