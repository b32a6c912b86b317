"""Evaluation: the official COCO (pycocotools) and Pascal VOC metrics on any of the zoo's datasets."""

from keras_pyramids.evaluation.coco_metrics import STAT_NAMES, coco_evaluate  # noqa: F401
from keras_pyramids.evaluation.detections import (  # noqa: F401
    detections_to_coco_results,
    predict_coco_results,
)
from keras_pyramids.evaluation.evaluator import evaluate_detector  # noqa: F401
from keras_pyramids.evaluation.protocols import (  # noqa: F401
    PROTOCOLS,
    describe_metrics,
    format_metrics,
    get_protocol,
)
from keras_pyramids.evaluation.voc_metrics import voc_evaluate  # noqa: F401
