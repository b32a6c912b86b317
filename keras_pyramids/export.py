"""Exporting a trained detector for serving: TensorFlow SavedModel and TFLite.

Both formats return *final* detections in pixels of each original image, so a
client needs nothing of this package:

``boxes [B, K, 4]`` float32 ``[ymin, xmin, ymax, xmax]`` in pixels,
``scores [B, K]`` float32, ``classes [B, K]`` int32 (0-based),
``num_detections [B]`` int32; entries past ``num_detections`` are zero.
``K`` is the post-processor's ``max_detections``.

SavedModel signatures (:func:`export_saved_model`):

- ``serving_default(images)``: ``uint8 [B, H, W, 3]`` RGB of any ``H, W``;
  resized inside to the model's size exactly as the data pipelines resize
  (bilinear, aspect ratio not kept, :func:`keras_pyramids.data.pipeline.resize_image`).
- ``serving_bytes(encoded)``: ``string [B]`` of encoded JPEG / PNG (also GIF /
  BMP) images, each of its own size.

Bad input fails with ``InvalidArgumentError`` whose message names the problem
(rank, channels, empty image, undecodable bytes); a wrong dtype is refused by
the signature itself (the error names the expected ``uint8`` / ``string``).

TFLite (:func:`export_tflite`): one signature ``serving_default(images)``
taking ``uint8 [B, H, W, 3]`` of any size like the SavedModel one, returning
decoded boxes and scores of every anchor; the NMS
(``tf.image.combined_non_max_suppression``, no TFLite builtin, needs the flex
delegate which this ``tf.lite.Interpreter`` lacks) runs outside TFLite in
:func:`run_tflite` with the model's settings saved in ``<path>.json``.
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_pyramids.categories import SAVED_MODEL_EXTRA_DIR, categories_file
from keras_pyramids.data.pipeline import resize_image
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.validation import check_new_paths

SIGNATURE_IMAGES = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
QUANTIZE_MODES = (None, "dynamic_int8")


def tflite_settings_path(path):
    """The NMS-settings file written beside the ``.tflite`` file ``path``."""
    return path + ".json"


def output_paths(path, format):
    """Every path an export of ``format`` (``"saved_model"`` or ``"tflite"``) to ``path`` writes."""
    return [path, tflite_settings_path(path)] if format == "tflite" else [path]


def _check_detector(model):
    """Raises ValueError unless ``model`` is a built Detector with a fixed image size."""
    if not (hasattr(model, "postprocess") and hasattr(model, "image_size")):
        raise ValueError(
            f"Only detectors (keras_pyramids Detector models) can be exported; got {type(model).__name__}."
        )


def detect_in_pixels(model, images, original_sizes):
    """Final detections of ``model`` with boxes in pixels of the original images.

    Args:
        model: a ``Detector``.
        images: float32 ``[B, h, w, 3]`` in 0..255, already at ``model.image_size``.
        original_sizes: float32 ``[B, 2]`` ``(height, width)`` of each original image.

    Returns:
        dict ``boxes [B, K, 4]`` (pixels, yxyx), ``scores [B, K]``, ``classes [B, K]``
        int32, ``num_detections [B]`` int32.
    """
    detections = model.postprocess(model(images, training=False))
    # Normalised boxes are the same fractions of the original image because
    # the resize stretches it (no padding), so scaling by its size is exact.
    scale = tf.tile(tf.cast(original_sizes, tf.float32), [1, 2])[:, None, :]  # [B, 1, 4]
    return {
        "boxes": tf.cast(detections["boxes"], tf.float32) * scale,
        "scores": tf.cast(detections["scores"], tf.float32),
        "classes": tf.cast(detections["classes"], tf.int32),
        "num_detections": tf.cast(detections["num_detections"], tf.int32),
    }


def _check_image_batch(images):
    """Asserts (in the graph) that ``images`` is ``[B, H, W, 3]`` with ``H, W > 0``."""
    actual = tf.shape(images)
    # One assert over a padded shape: separate asserts run in no fixed order
    # (and Grappler does not keep a slice of the shape behind a rank check),
    # so indexing the raw shape of a rank-3 input would fail first, unclearly.
    padded = tf.concat([actual, tf.zeros([4], tf.int32)], axis=0)
    valid = tf.logical_and(tf.equal(tf.size(actual), 4),
                           tf.logical_and(tf.equal(padded[3], 3), tf.reduce_all(padded[1:3] > 0)))
    check = tf.debugging.Assert(valid, [
        "images must be a batch of shape [batch, height, width, 3] (rank 4, 3 RGB channels, "
        "height and width > 0); got shape", actual], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(images)


def serve_images(model, images, check=True):
    """``uint8 [B, H, W, 3]`` of any size -> pixel detections (see :func:`detect_in_pixels`).

    ``check=False`` leaves out the graph asserts (TFLite has no Assert op).
    """
    if check:
        images = _check_image_batch(images)
    images = tf.ensure_shape(images, [None, None, None, 3])
    shape = tf.shape(images)
    original = tf.tile(tf.cast(shape[1:3], tf.float32)[None, :], [shape[0], 1])
    resized = resize_image(images, model.image_size)
    resized = tf.ensure_shape(resized, [None, *model.image_size, 3])
    return detect_in_pixels(model, resized, original)


def _decode_one(encoded, image_size):
    """One encoded image string -> (float32 ``[h, w, 3]`` at ``image_size``, ``[2]`` original size)."""
    # decode_image names the problem ("Unknown image file format. One of JPEG,
    # PNG, GIF, BMP required.") in an InvalidArgumentError for bad bytes.
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    size = tf.shape(image)[:2]
    with tf.control_dependencies([
        tf.debugging.assert_positive(size, message="an encoded image decoded to an empty image")
    ]):
        image = resize_image(image, image_size)
    image = tf.ensure_shape(image, [*image_size, 3])
    return image, tf.cast(size, tf.float32)


def serve_bytes(model, encoded):
    """``string [B]`` of encoded JPEG / PNG images -> pixel detections of each image."""
    with tf.control_dependencies([tf.debugging.assert_rank(
            encoded, 1, message="encoded must be a 1-D batch of encoded image strings [batch]")]):
        encoded = tf.identity(encoded)
    images, sizes = tf.map_fn(
        lambda e: _decode_one(e, model.image_size),
        encoded,
        fn_output_signature=(tf.TensorSpec([*model.image_size, 3], tf.float32),
                             tf.TensorSpec([2], tf.float32)),
    )
    return detect_in_pixels(model, images, sizes)


def export_saved_model(model, path, overwrite=False, categories=None):
    """Writes ``model`` as a SavedModel with ``serving_default`` and ``serving_bytes``.

    Args:
        model: a ``Detector`` (any family of the zoo).
        path: new directory to write.
        overwrite: replace an existing ``path``.
        categories: optional :class:`~keras_pyramids.categories.Categories` of
            the model, written to ``<path>/assets.extra/categories.json`` (read
            by ``keras-pyramids predict``).

    Returns:
        ``path``. Load with ``tf.saved_model.load(path)`` and call
        ``loaded.signatures["serving_default"](images=uint8 [B, H, W, 3])`` or
        ``loaded.signatures["serving_bytes"](encoded=string [B])``; both return
        the dict of the module docstring. ``loaded.serving_default(images)`` and
        ``loaded.serving_bytes(encoded)`` are the same functions.

    Raises:
        ValueError: not a detector.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    _check_detector(model)
    if not overwrite:
        check_new_paths(output_paths(path, "saved_model"))
    archive = keras.export.ExportArchive()
    archive.track(model)
    # ExportArchive makes every endpoint a signature of the same name.
    archive.add_endpoint(
        SIGNATURE_IMAGES, lambda images: serve_images(model, images),
        input_signature=[tf.TensorSpec(None, tf.uint8, name="images")],  # any rank: checked inside
    )
    archive.add_endpoint(
        SIGNATURE_BYTES, lambda encoded: serve_bytes(model, encoded),
        input_signature=[tf.TensorSpec(None, tf.string, name="encoded")],  # any rank: checked inside
    )
    archive.write_out(path, verbose=False)
    if categories is not None:
        os.makedirs(os.path.join(path, SAVED_MODEL_EXTRA_DIR), exist_ok=True)
        with open(categories_file(path), "w") as f:
            json.dump(categories.to_dict(), f, indent=1)
    return path


def decode_in_graph(model, images):
    """``uint8 [B, H, W, 3]`` of any size -> decoded boxes and scores of every anchor, no NMS.

    Returns:
        dict ``boxes [B, N, 4]`` float32 normalised ``[ymin, xmin, ymax, xmax]``
        (clipped to ``[0, 1]``) and ``scores [B, N, C]`` float32, ``N`` the
        model's candidates; exactly what ``model.decode`` hands to its
        post-processor's NMS.
    """
    images = tf.ensure_shape(images, [None, None, None, 3])
    resized = tf.ensure_shape(resize_image(images, model.image_size), [None, *model.image_size, 3])
    decoded = model.decode(model(resized, training=False))
    return {"boxes": tf.cast(decoded["boxes"], tf.float32), "scores": tf.cast(decoded["scores"], tf.float32)}


def nms_in_pixels(settings, boxes, scores, original_sizes):
    """Runs the model's NMS on decoded boxes and scales the result to pixels.

    Args:
        settings: what :func:`export_tflite` saves beside the file:
            ``{"postprocessor": DetectionPostProcessor config, "level_sizes": [...]}``.
        boxes: ``[B, N, 4]`` normalised decoded boxes; scores: ``[B, N, C]``.
        original_sizes: ``[B, 2]`` ``(height, width)`` of the original images.

    Returns:
        the detection dict of the module docstring (numpy arrays).
    """
    postprocessor = DetectionPostProcessor.from_config(settings["postprocessor"])
    detections = postprocessor(tf.convert_to_tensor(boxes, tf.float32), tf.convert_to_tensor(scores, tf.float32),
                               level_sizes=settings.get("level_sizes"))
    scale = tf.tile(tf.cast(original_sizes, tf.float32), [1, 2])[:, None, :]
    return {
        "boxes": (tf.cast(detections["boxes"], tf.float32) * scale).numpy(),
        "scores": tf.cast(detections["scores"], tf.float32).numpy(),
        "classes": tf.cast(detections["classes"], tf.int32).numpy(),
        "num_detections": tf.cast(detections["num_detections"], tf.int32).numpy(),
    }


def export_tflite(model, path, quantize=None, overwrite=False):
    """Writes ``model`` as a TFLite flatbuffer (resize + network + box decoding) and its NMS settings.

    The ``tf.lite.Interpreter`` of the ``tensorflow`` pip package here does not
    link the flex delegate, so it cannot run ``CombinedNonMaxSuppression`` (no
    TFLite builtin; checked: "Select TensorFlow op(s) ... not supported by this
    interpreter"). The file therefore stops before NMS: its signature
    ``serving_default(images uint8 [B, H, W, 3], any size)`` returns
    ``boxes [B, N, 4]`` normalised decoded boxes and ``scores [B, N, C]``
    (:func:`decode_in_graph`); :func:`run_tflite` runs the model's NMS on them
    outside TFLite with the settings saved beside the file in ``<path>.json``.

    Args:
        model: a ``Detector``.
        path: new ``.tflite`` file.
        quantize: ``None`` (float32) or ``"dynamic_int8"`` (dynamic-range
            quantisation: int8 weights, float activations; about 4x smaller).
        overwrite: replace existing files.

    Returns:
        ``path``.

    Raises:
        ValueError: not a detector, or an unknown ``quantize``.
        FileExistsError: ``path`` or ``<path>.json`` exists and ``overwrite`` is False.
    """
    _check_detector(model)
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}; got {quantize!r}.")
    if not overwrite:
        check_new_paths(output_paths(path, "tflite"))
    with tempfile.TemporaryDirectory() as tmp:
        # Through a SavedModel so variables become constants the standard way.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            SIGNATURE_IMAGES, lambda images: decode_in_graph(model, images),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
        )
        saved = os.path.join(tmp, "saved_model")
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE_IMAGES])
        if quantize == "dynamic_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        flatbuffer = converter.convert()
    mode = "w" if overwrite else "x"  # "x": a file created meanwhile is still not replaced
    with open(path, mode + "b") as f:
        f.write(flatbuffer)
    with open(tflite_settings_path(path), mode) as f:
        json.dump({"postprocessor": model.postprocessor.get_config(), "level_sizes": model.level_sizes,
                   "image_size": list(model.image_size), "num_classes": model.num_classes,
                   "quantize": quantize}, f, indent=1)
    return path


def run_tflite(path, images):
    """Runs an exported ``.tflite`` detector on ``uint8 [B, H, W, 3]`` images, NMS included.

    Args:
        path: file written by :func:`export_tflite` (``<path>.json`` beside it).
        images: numpy ``uint8 [B, H, W, 3]``, any size.

    Returns:
        dict of numpy arrays as the SavedModel signatures return (pixel boxes).

    Raises:
        ValueError: ``images`` is not a uint8 ``[B, H, W, 3]`` array.
        FileNotFoundError: the model or its settings file is missing.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape[1:3]:
        raise ValueError(f"images must be a uint8 array [batch, height, width, 3] with height, width > 0; "
                         f"got {images.dtype} {images.shape}.")
    for file in (path, tflite_settings_path(path)):
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{file} does not exist (write both with export_tflite).")
    with open(tflite_settings_path(path)) as f:
        settings = json.load(f)
    interpreter = tf.lite.Interpreter(model_path=path)
    outputs = interpreter.get_signature_runner(SIGNATURE_IMAGES)(images=images)
    sizes = np.tile(np.asarray(images.shape[1:3], np.float32), (images.shape[0], 1))
    return nms_in_pixels(settings, outputs["boxes"], outputs["scores"], sizes)
