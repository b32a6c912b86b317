"""Detection data: sources, augmentation and ``tf.data`` pipelines.

Sources (:func:`load_dataset`): the built-in ``"shapes"`` dataset, a
``"coco_folder"`` (COCO JSON + images) and the TFDS ``"coco/2017"`` and
``"voc/2007"`` datasets. All yield the same *source examples* (see
:mod:`keras_pyramids.data.dataset`), which :func:`make_detection_pipeline` and
:func:`make_inference_pipeline` turn into model inputs, and all describe their
evaluation ground truth in COCO format without decoding images
(:mod:`keras_pyramids.data.coco_format`).
"""

from keras_pyramids.data.dataset import (  # noqa: F401
    DetectionDataset,
    check_distinct,
    shared_images,
    validate_boxes,
)
from keras_pyramids.data.pipeline import (  # noqa: F401
    make_detection_pipeline,
    make_inference_pipeline,
)
from keras_pyramids.data.sources import DATASET_NAMES, load_dataset  # noqa: F401
