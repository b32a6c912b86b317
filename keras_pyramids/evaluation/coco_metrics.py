"""COCO detection metrics (AP, AP50, AP75, APs, APm, APl, AR...) with pycocotools.

The 12 numbers are ``COCOeval.stats`` of the official COCO evaluation (Lin et
al., "Microsoft COCO", and http://cocodataset.org/#detection-eval): AP averaged
over IoU 0.50:0.05:0.95 with 101-point interpolated precision, AP at IoU 0.5 and
0.75, AP for small (area < 32^2 px), medium and large objects, and average
recall for 1 / 10 / 100 detections per image and per object size. The PPN
paper's "mAP" (Table 1: PPN 20.0, SSD 19.7) is ``AP``. pycocotools reports
``-1`` for a number that has no ground truth to measure (e.g. ``APs`` when no
object is small); that convention is kept.

What makes the numbers the official ones is the ground truth: each
annotation's own ``area`` (the segmentation area on COCO) decides its size
bucket, and crowd regions (``iscrowd = 1``) are ignore regions: detections on
them count neither way. Every source of the zoo hands its annotations over as
they are (``DetectionDataset.coco_ground_truth()``), so :func:`coco_evaluate`
gives what pycocotools gives on the original annotation file.
"""

import contextlib
import copy
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

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
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


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
            ``DetectionDataset.coco_ground_truth()``.
        results: list of ``{"image_id", "category_id", "bbox", "score"}``.
        image_ids: evaluate only these images (default: every ground-truth image).
        verbose: print pycocotools' progress and summary table.

    Returns:
        ``{name: float}`` for the 12 names of :data:`STAT_NAMES`.

    Raises:
        ValueError: a result refers to an image or category the ground truth
            does not have.
    """
    ground_truth = dict(ground_truth)
    # COCOeval writes an "ignore" key into each ground-truth annotation.
    ground_truth["annotations"] = [dict(a) for a in ground_truth.get("annotations", [])]
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
