"""COCO detection metrics (AP, AP50, AP75, APs, APm, APl, AR...) with pycocotools.

The 12 numbers are ``COCOeval.stats`` of the official COCO evaluation (Lin et
al., "Microsoft COCO", and http://cocodataset.org/#detection-eval): AP averaged
over IoU 0.50:0.05:0.95 with 101-point interpolated precision, AP at IoU 0.5 and
0.75, AP for small (< 32^2 px), medium and large objects, and average recall
for 1 / 10 / 100 detections per image and per object size. The PPN paper's
"mAP" (Table 1: PPN 20.0, SSD 19.7) is ``AP``. pycocotools reports ``-1`` for
a number that has no ground truth to measure (e.g. ``APs`` when no object is
small); that convention is kept.

Pipeline: ``model.predict`` over ``make_inference_pipeline`` batches ->
detections in normalised ``[ymin, xmin, ymax, xmax]`` of the resized image,
which are the same fractions of the original image (the resize stretches the
image to the model's fixed size, as the reference's ``fixed_shape_resizer``)
-> COCO results in pixels of the original image, ``[x, y, width, height]``,
with dataset category ids -> ``COCOeval``.
"""

import contextlib
import copy
import io

import numpy as np

STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)


@contextlib.contextmanager
def _quiet(verbose):
    """Swallows pycocotools' progress prints unless ``verbose``."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def _coco_from_dict(dataset):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


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


def _results_coco(ground_truth, results):
    """A COCO object of ``results``, as ``COCO.loadRes`` makes for boxes.

    Built by hand because ``loadRes`` fails on an empty result list; an empty
    list must give AP 0, not a crash.
    """
    annotations = []
    for index, result in enumerate(results):
        x, y, w, h = result["bbox"]
        annotations.append(dict(result, area=float(w * h), id=index + 1, iscrowd=0,
                                segmentation=[[x, y, x, y + h, x + w, y + h, x + w, y]]))
    return _coco_from_dict({
        "images": list(ground_truth["images"]),
        "categories": copy.deepcopy(ground_truth["categories"]),
        "annotations": annotations,
    })


def coco_evaluate(ground_truth, results, image_ids=None, verbose=False):
    """Runs the COCO box evaluation of ``results`` against ``ground_truth``.

    Args:
        ground_truth: COCO-format ground-truth dict (``images``, ``annotations``
            with ``bbox`` xywh pixels, ``area``, ``iscrowd``, ``categories``), e.g.
            from ``keras_pyramids.data.coco_folder.to_coco_ground_truth``.
        results: list of ``{"image_id", "category_id", "bbox", "score"}``.
        image_ids: evaluate only these images (default: every ground-truth image).
        verbose: print pycocotools' progress and summary table.

    Returns:
        ``{name: float}`` for the 12 names of :data:`STAT_NAMES`.

    Raises:
        ValueError: a result refers to an image or category the ground truth
            does not have.
    """
    from pycocotools.cocoeval import COCOeval

    ground_truth = dict(ground_truth)
    ground_truth.setdefault("annotations", [])
    known_images = {image["id"] for image in ground_truth["images"]}
    known_categories = {category["id"] for category in ground_truth["categories"]}
    for result in results:
        if result["image_id"] not in known_images:
            raise ValueError(f"Result for image id {result['image_id']} not in the ground truth.")
        if result["category_id"] not in known_categories:
            raise ValueError(
                f"Result with category id {result['category_id']} not in the ground truth."
            )
    with _quiet(verbose):
        gt_coco = _coco_from_dict(ground_truth)
        dt_coco = _results_coco(ground_truth, results)
        evaluator = COCOeval(gt_coco, dt_coco, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}


def predict_coco_results(model, inference_batches, category_ids, max_batches=None):
    """Runs ``model`` over an inference pipeline and collects COCO results.

    Args:
        model: a detector whose ``predict_on_batch`` returns the detection dict
            (see :func:`detections_to_coco_results`).
        inference_batches: iterable of ``(images, {"image_id": [B],
            "original_size": [B, 2]})``, e.g. ``make_inference_pipeline``.
        category_ids: COCO category id of each class index.
        max_batches: stop after this many batches.

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
    return results, seen


def evaluate_detector(model, dataset, batch_size=8, max_examples=None, verbose=False,
                      jit_compile=None):
    """COCO metrics of ``model`` on a ``DetectionDataset`` (any of the zoo's datasets).

    Args:
        model: a ``Detector`` (``model.image_size``, ``predict_on_batch``).
        dataset: ``keras_pyramids.data.load_dataset(...)`` result; its
            ``category_ids`` map class indices to the ground truth's categories.
        batch_size: inference batch size.
        max_examples: evaluate only the first ``max_examples`` images.
        verbose: print pycocotools' summary table.
        jit_compile: XLA for the predict function; ``None`` chooses by device
            (:func:`keras_pyramids.training.strategy.default_jit_compile`):
            never left to Keras' ``"auto"``, which may pick XLA on CPU.

    Returns:
        dict of the 12 COCO stats (:data:`STAT_NAMES`) plus ``"num_images"`` and
        ``"num_detections"``.
    """
    from keras_pyramids.data import make_inference_pipeline
    from keras_pyramids.data.coco_folder import to_coco_ground_truth
    from keras_pyramids.training.strategy import default_jit_compile

    if jit_compile is None:
        jit_compile = default_jit_compile()
    if model.jit_compile != jit_compile:
        model.jit_compile = jit_compile
        model.predict_function = None  # re-trace with the new setting
    examples = dataset.examples
    if max_examples is not None:
        examples = examples.take(int(max_examples))
    batches = make_inference_pipeline(examples, model.image_size, batch_size)
    results, image_ids = predict_coco_results(model, batches, dataset.category_ids)
    metrics = coco_evaluate(to_coco_ground_truth(dataset), results, image_ids=image_ids,
                            verbose=verbose)
    metrics["num_images"] = len(image_ids)
    metrics["num_detections"] = len(results)
    return metrics


def format_metrics(metrics, names=STAT_NAMES[:6]):
    """One line such as ``AP 0.123  AP50 0.321 ...`` (-1 means no ground truth of that size)."""
    return "  ".join(f"{name} {metrics[name]:.3f}" for name in names if name in metrics)
