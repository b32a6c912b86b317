"""Evaluation: COCO metrics with pycocotools on any of the zoo's datasets."""

from keras_pyramids.evaluation.coco_metrics import (  # noqa: F401
    STAT_NAMES,
    coco_evaluate,
    detections_to_coco_results,
    evaluate_detector,
    format_metrics,
    predict_coco_results,
)
