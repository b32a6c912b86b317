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

TFLite (:func:`export_tflite`), one signature ``serving_default(images)``
taking ``uint8`` images of any size like the SavedModel one, in one of two
layouts (``nms=``; the default ``"auto"`` takes the first that can express the
model's post-processing):

- ``"in_file"``: final detections from the file itself, in the stock
  ``tf.lite.Interpreter``. Decoding and per-class NMS are TFLite's built-in
  custom op ``TFLite_Detection_PostProcess`` (what the TF Object Detection
  API's SSD export and the Model Garden's ``nms_version="tflite"`` use; the
  converter replaces a ``tf.function`` marked
  ``experimental_implements="TFLite_Detection_PostProcess ..."`` by the op),
  with ``use_regular_nms`` (per-class NMS as ``combined_non_max_suppression``),
  followed by the same clip-and-drop-zero-area step as the model's
  post-processor. The op takes one image: the input is ``uint8 [1, H, W, 3]``.
  Possible for every anchor-based single-shot model with hard NMS (PPN, SSD,
  RetinaNet).
- ``"outside"``: the file holds resize, network and box decoding and returns
  the decoded boxes and scores of every anchor for ``uint8 [B, H, W, 3]``; the
  model's post-processor runs outside TFLite in :func:`run_tflite` /
  :class:`TFLiteDetector` with the settings saved in ``<path>.json``. The only
  choice where the op cannot express the post-processing: soft-NMS (M2Det) and
  the per-level pre-NMS top-k (the op has neither).

Both write ``<path>.json`` (settings, and which layout the file has);
:class:`TFLiteDetector` (one interpreter, reused) and :func:`run_tflite` run
either and return the detection dict above.
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_pyramids.categories import SAVED_MODEL_EXTRA_DIR, categories_file
from keras_pyramids.data.pipeline import resize_image
from keras_pyramids.models.two_stage import TwoStageDetector
from keras_pyramids.ops.roi_align import RoIAlign
from keras_pyramids.ops.losses import class_scores
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.validation import check_new_paths

SIGNATURE_IMAGES = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
QUANTIZE_MODES = (None, "dynamic_int8")
NMS_PLACES = ("auto", "in_file", "outside")
TFLITE_POSTPROCESS_OP = "TFLite_Detection_PostProcess"


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
        (not clipped) and ``scores [B, N, C]`` float32, ``N`` the model's
        candidates; exactly what ``model.decode`` hands to its post-processor.
    """
    images = tf.ensure_shape(images, [None, None, None, 3])
    resized = tf.ensure_shape(resize_image(images, model.image_size), [None, *model.image_size, 3])
    decoded = model.decode(model(resized, training=False))
    return {"boxes": tf.cast(decoded["boxes"], tf.float32), "scores": tf.cast(decoded["scores"], tf.float32)}


def tflite_nms_unsupported(model):
    """Why ``TFLite_Detection_PostProcess`` cannot do ``model``'s post-processing, or ``None`` if it can.

    The op decodes Faster R-CNN style box codes against anchors (scale factors
    ``y, x, h, w``) and runs greedy per-class NMS; it has no soft-NMS and no
    per-level pre-NMS top-k.
    """
    if not all(hasattr(model, name) for name in ("anchors", "box_coder", "loss_config")):
        return f"{type(model).__name__} is not an anchor-based single-shot detector"
    postprocessor = model.postprocessor
    if postprocessor.nms != "hard":
        return f"its post-processing is soft-NMS (nms={postprocessor.nms!r})"
    if postprocessor.pre_nms_top_k_per_level is not None:
        return "its post-processing keeps the best anchors of each level before NMS (pre_nms_top_k_per_level)"
    return None


def _postprocess_op_signature(model, score_threshold, regular_nms):
    """The ``experimental_implements`` attributes the converter turns into ``TFLite_Detection_PostProcess``."""
    post = model.postprocessor
    scale_y, scale_x, scale_h, scale_w = model.box_coder.scale_factors
    attributes = [
        ("max_detections", "i", post.max_detections),
        ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", post.max_detections_per_class),
        ("use_regular_nms", "b", "true" if regular_nms else "false"),
        ("nms_score_threshold", "f", score_threshold),
        ("nms_iou_threshold", "f", post.iou_threshold),
        ("y_scale", "f", scale_y),
        ("x_scale", "f", scale_x),
        ("h_scale", "f", scale_h),
        ("w_scale", "f", scale_w),
        ("num_classes", "i", model.num_classes),
    ]
    parts = [f'name: "{TFLITE_POSTPROCESS_OP}"']
    for key, kind, value in attributes:
        text = repr(float(value)) if kind == "f" else value
        parts.append(f'attr {{ key: "{key}" value {{ {kind}: {text} }} }}')
    return " ".join(parts)


def _center_size_anchors(anchors):
    """``[N, 4]`` yxyx anchors -> ``[N, 4]`` ``(y_center, x_center, height, width)``, the op's layout."""
    anchors = np.asarray(anchors, np.float64)
    size = anchors[:, 2:] - anchors[:, :2]
    return np.concatenate([anchors[:, :2] + size / 2, size], axis=1).astype(np.float32)


CERTAIN_CANDIDATES_PER_CLASS = 16
CERTAIN_NMS_ROUNDS = 8
# Decoded in float32 by us and by the op: an IoU this close to the threshold
# could go either way, so it neither certainly suppresses nor certainly spares.
_IOU_MARGIN = 1e-4


def certain_score_floor(boxes, scores, score_threshold, iou_threshold, max_detections,
                        max_detections_per_class, per_class=CERTAIN_CANDIDATES_PER_CLASS,
                        rounds=CERTAIN_NMS_ROUNDS):
    """A score that at least ``max_detections`` certain survivors of per-class NMS reach (-1 if unknown).

    Greedy per-class NMS visits a class's candidates best first, so its
    decisions on a class's ``k`` best candidates depend on those ``k`` alone.
    Among them, a candidate is certainly kept when every better candidate that
    may overlap it by more than the IoU threshold is certainly suppressed, and
    certainly suppressed when a certainly kept better candidate overlaps it by
    more than the threshold; ``rounds`` rounds of these two rules (the class's
    best box is kept in the first) decide a cluster of overlapping boxes and
    the boxes after it, and whatever they leave undecided simply does not
    count. Counting the certainly kept candidates that lie inside the image
    (the clip-and-drop step after NMS keeps those) gives a floor: if
    ``max_detections`` of them score at least ``t``, the final
    ``max_detections`` detections all score at least ``t``, and since NMS only
    lets a better box suppress a worse one, dropping every candidate below
    ``t`` before NMS changes neither which boxes survive above it nor the
    final detections (up to ties at ``t``).

    Args:
        boxes: ``[N, 4]`` decoded normalised ``yxyx`` boxes (one image).
        scores: ``[N, C]`` class scores.
        score_threshold, iou_threshold, max_detections,
        max_detections_per_class: the NMS settings.
        per_class: how many of each class's best candidates are examined (at
            least enough for ``2 * max_detections`` over all classes, at most
            ``max_detections_per_class``).
        rounds: rounds of the two rules.

    Returns:
        scalar float32: the floor, or -1 when fewer than ``max_detections``
        certain survivors were found (then nothing may be dropped).
    """
    # Enough per class that the classes together can offer max_detections twice over.
    per_class = max(per_class, -(-2 * max_detections // int(scores.shape[1])))
    per_class = min(per_class, max_detections_per_class, int(scores.shape[0]))
    best_scores, best = tf.math.top_k(tf.transpose(scores), k=per_class)  # [C, k]
    candidates = tf.gather(boxes, best)  # [C, k, 4]
    y0, x0, y1, x1 = tf.unstack(candidates, axis=-1)
    area = tf.maximum(y1 - y0, 0.0) * tf.maximum(x1 - x0, 0.0)
    inter_h = tf.maximum(tf.minimum(y1[:, :, None], y1[:, None, :]) - tf.maximum(y0[:, :, None], y0[:, None, :]), 0.0)
    inter_w = tf.maximum(tf.minimum(x1[:, :, None], x1[:, None, :]) - tf.maximum(x0[:, :, None], x0[:, None, :]), 0.0)
    inter = inter_h * inter_w
    iou = inter / tf.maximum(area[:, :, None] + area[:, None, :] - inter, 1e-12)  # [C, k, k]
    # [c, j, i]: 1 where candidate i ranks above candidate j of class c. The rounds are float
    # matrix products (counts of overlapping better boxes), which TFLite runs faster than
    # boolean reductions.
    better = tf.constant(np.tril(np.ones([per_class, per_class], np.float32), k=-1))[None]
    may_suppress = better * tf.cast(iou >= iou_threshold - _IOU_MARGIN, tf.float32)
    suppresses = better * tf.cast(iou > iou_threshold + _IOU_MARGIN, tf.float32)
    kept = tf.zeros_like(best_scores)[:, :, None]
    suppressed = tf.zeros_like(best_scores)[:, :, None]
    for _ in range(rounds):
        kept, suppressed = (tf.cast(tf.matmul(may_suppress, 1.0 - suppressed) < 0.5, tf.float32),
                            tf.cast(tf.matmul(suppresses, kept) > 0.5, tf.float32))
    kept = kept[:, :, 0] > 0.5
    inside = ((tf.minimum(y1, 1.0) - tf.maximum(y0, 0.0)) > 0.0) & ((tf.minimum(x1, 1.0) - tf.maximum(x0, 0.0)) > 0.0)
    certain = kept & inside & (best_scores > score_threshold)
    certain_scores = tf.reshape(tf.where(certain, best_scores, -1.0), [-1])
    if int(certain_scores.shape[0]) < max_detections:
        return tf.constant(-1.0)
    return tf.math.top_k(certain_scores, k=max_detections).values[-1]


def drop_candidates_below_certain_floor(model, codes, scores, score_threshold):
    """Scores of one image with every candidate below :func:`certain_score_floor` set to 0.

    The op's per-class NMS sorts and scans every (anchor, class) pair above
    its score threshold: 270,000 pairs for 3,000 anchors x 90 classes at
    PPN's 1e-8. Dropping the pairs that cannot reach the final detections
    makes it as fast as the file without NMS and leaves its detections
    unchanged.
    """
    post = model.postprocessor
    boxes = model.box_coder.decode(codes[0], tf.constant(np.asarray(model.anchors, np.float32)))
    floor = certain_score_floor(boxes, scores[0], score_threshold, post.iou_threshold, post.max_detections,
                                post.max_detections_per_class)
    # min(score, 2 * step(score - below)) keeps every score >= the floor and zeroes the rest (below
    # the op's threshold); three cheap element-wise ops where TFLite's select is ~3x slower.
    below = floor - tf.abs(floor) * 1e-6
    return tf.minimum(scores, 2.0 * tf.sign(tf.nn.relu(scores - below)))


def detect_with_postprocess_op(model, images, score_threshold=None, regular_nms=True):
    """``uint8 [1, H, W, 3]`` -> pixel detections, with ``TFLite_Detection_PostProcess`` doing decode + NMS.

    ``score_threshold`` (default the post-processor's) and ``regular_nms``: see
    :func:`export_tflite`.

    Only meaningful once converted to TFLite: in TensorFlow the op's stand-in
    returns zeros. After the op, boxes are clipped to the image and zero-area
    ones dropped, as :class:`~keras_pyramids.ops.postprocess.DetectionPostProcessor`
    does (the op keeps ``max_detections`` before that drop, the layer after it).
    """
    images = tf.ensure_shape(images, [1, None, None, 3])
    original = tf.cast(tf.shape(images)[1:3], tf.float32)
    resized = tf.ensure_shape(resize_image(images, model.image_size), [1, *model.image_size, 3])
    outputs = model(resized, training=False)
    codes = tf.cast(outputs["boxes"], tf.float32)
    scores = tf.cast(class_scores(outputs["classes"], model.loss_config), tf.float32)
    anchors = tf.constant(_center_size_anchors(model.anchors))

    count = model.postprocessor.max_detections

    if score_threshold is None:
        score_threshold = model.postprocessor.score_threshold

    @tf.function(experimental_implements=_postprocess_op_signature(model, score_threshold, regular_nms))
    def postprocess_op(box_codes, class_scores, anchors):  # noqa: ARG001 - the op's inputs
        # Stand-ins of the op's outputs' shapes: the converter replaces the
        # whole function by the op.
        return (tf.zeros([1, count, 4], name="boxes"), tf.zeros([1, count], name="classes"),
                tf.zeros([1, count], name="scores"), tf.zeros([1], name="num_detections"))

    if regular_nms:
        scores = drop_candidates_below_certain_floor(model, codes, scores, score_threshold)
    boxes, classes, scores, num = postprocess_op(codes, scores, anchors)
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    classes = tf.cast(classes, tf.int32)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    valid = (tf.range(count)[None, :] < tf.cast(num[:, None], tf.int32)) & (area > 0.0)
    ranked, best = tf.math.top_k(tf.where(valid, scores, -tf.ones_like(scores)), k=count)
    valid = ranked >= 0.0
    scale = tf.tile(original, [2])
    return {
        "boxes": tf.where(valid[..., None], tf.gather(boxes, best, batch_dims=1) * scale, 0.0),
        "scores": tf.where(valid, ranked, 0.0),
        "classes": tf.where(valid, tf.gather(classes, best, batch_dims=1), 0),
        "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1),
    }


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


def export_tflite(model, path, quantize=None, overwrite=False, nms="auto", nms_score_threshold=None,
                  regular_nms=True):
    """Writes ``model`` as a TFLite flatbuffer and its settings (``<path>.json``).

    Args:
        model: a ``Detector``.
        path: new ``.tflite`` file.
        quantize: ``None`` (float32) or ``"dynamic_int8"`` (dynamic-range
            quantisation: int8 weights, float activations; about 4x smaller).
        overwrite: replace existing files.
        nms: ``"in_file"`` (final detections from the file, TFLite's built-in
            ``TFLite_Detection_PostProcess``; one image per call),
            ``"outside"`` (the file stops after box decoding; the NMS runs in
            :func:`run_tflite`) or ``"auto"``: in the file whenever the op can
            express the model's post-processing (:func:`tflite_nms_unsupported`),
            else outside. See the module docstring.
        nms_score_threshold: NMS inside only: the lowest score that enters
            the NMS; default the model's (e.g. PPN's 1e-8). Per-class greedy
            NMS gives the same detections at and above any threshold whatever
            lower boxes exist (a box never suppresses a higher-scoring one),
            so a higher value only drops the low-scoring tail, and makes the
            op's NMS much cheaper: with 1e-8 every (anchor, class) pair
            enters it (e.g. 3000 x 90 for PPN on COCO).
        regular_nms: NMS inside only: ``True`` (per-class NMS, as the model's
            post-processor) or ``False``: the op's fast NMS (the OD API's
            TFLite default): each anchor keeps its best class and one NMS runs
            over all classes together, so a box can suppress a box of another
            class: detections differ from the model's.

    Returns:
        ``path``.

    Raises:
        ValueError: not a detector, a two-stage detector with RoIAlign (TFLite
            cannot run it), an unknown ``quantize`` or ``nms``, or
            ``nms="in_file"`` for a model whose post-processing the op cannot do
            (the message says why).
        FileExistsError: ``path`` or ``<path>.json`` exists and ``overwrite`` is False.
    """
    _check_detector(model)
    if isinstance(model, TwoStageDetector) and isinstance(model.roi_pooler, RoIAlign):
        # Checked: the converter refuses RoIAlign's rank-6 batched matmul, and with that flattened
        # the interpreter refuses its rank-6 strided slices (TFLite kernels take at most rank 5).
        raise ValueError(f"TFLite cannot run {model.name}: its RoIAlign works on rank-6 tensors and TFLite "
                         "kernels take at most rank 5; export a SavedModel.")
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}; got {quantize!r}.")
    if nms not in NMS_PLACES:
        raise ValueError(f"nms must be one of {NMS_PLACES}; got {nms!r}.")
    unsupported = tflite_nms_unsupported(model)
    if nms == "in_file" and unsupported:
        raise ValueError(f"NMS cannot run inside the TFLite file for {model.name}: {unsupported}, which "
                         f"{TFLITE_POSTPROCESS_OP} cannot express; export with nms='outside'.")
    in_file = nms == "in_file" or (nms == "auto" and not unsupported)
    if not overwrite:
        check_new_paths(output_paths(path, "tflite"))
    with tempfile.TemporaryDirectory() as tmp:
        # Through a SavedModel so variables become constants the standard way.
        archive = keras.export.ExportArchive()
        archive.track(model)
        if in_file:
            archive.add_endpoint(
                SIGNATURE_IMAGES,
                lambda images: detect_with_postprocess_op(model, images, nms_score_threshold, regular_nms),
                input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")],
            )
        else:
            archive.add_endpoint(
                SIGNATURE_IMAGES, lambda images: decode_in_graph(model, images),
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
            )
        saved = os.path.join(tmp, "saved_model")
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE_IMAGES])
        # TFLite_Detection_PostProcess is a custom op (registered by the stock interpreter's resolver).
        converter.allow_custom_ops = in_file
        if quantize == "dynamic_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        flatbuffer = converter.convert()
    mode = "w" if overwrite else "x"  # "x": a file created meanwhile is still not replaced
    with open(path, mode + "b") as f:
        f.write(flatbuffer)
    with open(tflite_settings_path(path), mode) as f:
        json.dump({"nms": "in_file" if in_file else "outside",
                   "in_file_nms": {"score_threshold": model.postprocessor.score_threshold
                                   if nms_score_threshold is None else float(nms_score_threshold),
                                   "regular_nms": bool(regular_nms)} if in_file else None,
                   "postprocessor": model.postprocessor.get_config(), "level_sizes": model.level_sizes,
                   "image_size": list(model.image_size), "num_classes": model.num_classes,
                   "quantize": quantize}, f, indent=1)
    return path


def _check_uint8_images(images):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape[1:3]:
        raise ValueError(f"images must be a uint8 array [batch, height, width, 3] with height, width > 0; "
                         f"got {images.dtype} {images.shape}.")
    return images


class TFLiteDetector:
    """A ``.tflite`` file written by :func:`export_tflite`, loaded once and run many times.

    ``detector(images)`` takes ``uint8 [B, H, W, 3]`` of any size and returns
    the detection dict of the module docstring (numpy arrays, pixel boxes),
    whichever layout the file has (``detector.nms`` is ``"in_file"`` or
    ``"outside"``); a file with NMS inside runs one image per call of its
    interpreter. One interpreter serves every call.

    Args:
        path: the ``.tflite`` file (``<path>.json`` beside it).
        num_threads: interpreter threads (``None``: TFLite's default).

    Raises:
        FileNotFoundError: the model or its settings file is missing.
    """

    def __init__(self, path, num_threads=None):
        for file in (path, tflite_settings_path(path)):
            if not os.path.isfile(file):
                raise FileNotFoundError(f"{file} does not exist (write both with export_tflite).")
        with open(tflite_settings_path(path)) as f:
            self.settings = json.load(f)
        self.nms = self.settings.get("nms", "outside")
        self.interpreter = tf.lite.Interpreter(model_path=path, num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE_IMAGES)

    def __call__(self, images):
        images = _check_uint8_images(images)
        if self.nms == "in_file":
            per_image = [self.runner(images=image[None]) for image in images]
            return {key: np.concatenate([np.asarray(out[key]) for out in per_image], axis=0)
                    for key in ("boxes", "scores", "classes", "num_detections")}
        outputs = self.runner(images=images)
        sizes = np.tile(np.asarray(images.shape[1:3], np.float32), (images.shape[0], 1))
        return nms_in_pixels(self.settings, outputs["boxes"], outputs["scores"], sizes)


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
    images = _check_uint8_images(images)
    return TFLiteDetector(path)(images)
