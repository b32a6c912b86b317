"""Model detections as COCO results: ``[x, y, width, height]`` pixels of the original image.

Pipeline: ``predict_on_batch`` over ``make_inference_pipeline`` batches ->
detections in normalised ``[ymin, xmin, ymax, xmax]`` of the resized image,
which are the same fractions of the original image (the resize stretches the
image to the model's fixed size, as the reference's ``fixed_shape_resizer``)
-> COCO result dicts with the dataset's category ids, which every evaluation
protocol reads.
"""

import numpy as np


def detections_to_coco_results(detections, image_ids, original_sizes, category_ids):
    """Converts a batch of model detections to COCO result dicts.

    Args:
        detections: ``model.predict`` output for a batch: ``{"boxes": [B, K, 4]``
            normalised ``[ymin, xmin, ymax, xmax]``, ``"scores": [B, K]``,
            ``"classes": [B, K]`` 0-based, ``"num_detections": [B]}``; entries at
            or past ``num_detections`` are padding and dropped.
        image_ids: ``[B]`` COCO image ids.
        original_sizes: ``[B, 2]`` ``(height, width)`` of the original images.
        category_ids: COCO category id of each class index.

    Returns:
        list of ``{"image_id", "category_id", "bbox": [x, y, w, h] in pixels of
        the original image, "score"}``; boxes are clipped to the image.
    """
    boxes = np.asarray(detections["boxes"], np.float64)
    scores = np.asarray(detections["scores"], np.float64)
    classes = np.asarray(detections["classes"]).astype(np.int64)
    counts = np.asarray(detections["num_detections"]).astype(np.int64).reshape(-1)
    category_ids = np.asarray(category_ids)
    results = []
    for b, image_id in enumerate(np.asarray(image_ids).reshape(-1)):
        height, width = (float(v) for v in np.asarray(original_sizes)[b])
        n = int(counts[b])
        yxyx = np.clip(boxes[b, :n], 0.0, 1.0) * [height, width, height, width]
        for (ymin, xmin, ymax, xmax), score, cls in zip(yxyx, scores[b, :n], classes[b, :n]):
            if not 0 <= cls < len(category_ids):
                raise ValueError(
                    f"Detection class {cls} is outside the dataset's {len(category_ids)} classes; "
                    "was the model trained with another num_classes?"
                )
            results.append({
                "image_id": int(image_id),
                "category_id": int(category_ids[cls]),
                "bbox": [float(xmin), float(ymin), float(xmax - xmin), float(ymax - ymin)],
                "score": float(score),
            })
    return results


def predict_coco_results(model, inference_batches, category_ids, max_batches=None, progress=None):
    """Runs ``model`` over an inference pipeline and collects COCO results.

    Args:
        model: a detector whose ``predict_on_batch`` returns the detection dict
            (see :func:`detections_to_coco_results`).
        inference_batches: iterable of ``(images, {"image_id": [B],
            "original_size": [B, 2]})``, e.g. ``make_inference_pipeline``.
        category_ids: COCO category id of each class index.
        max_batches: stop after this many batches.
        progress: optional :class:`keras_pyramids.progress.Progress` counting images.

    Returns:
        ``(results, image_ids)``: the COCO result list and every image id seen
        (images with no detection included, so they count as misses).
    """
    results, seen = [], []
    for index, (images, info) in enumerate(inference_batches):
        if max_batches is not None and index >= max_batches:
            break
        # predict_on_batch runs the model's compiled predict function (graph
        # mode; XLA only if model.jit_compile says so) without the progress bar
        # and per-call dataset set-up of model.predict.
        detections = model.predict_on_batch(images)
        image_ids = np.asarray(info["image_id"]).reshape(-1)
        results += detections_to_coco_results(
            detections, image_ids, np.asarray(info["original_size"]), category_ids
        )
        seen += [int(i) for i in image_ids]
        if progress is not None:
            progress.update(len(seen))
    if progress is not None:
        progress.finish()
    return results, seen
