"""Detection data: sources, augmentation and ``tf.data`` pipelines.

Sources (:func:`load_dataset`): the built-in ``"shapes"`` dataset, a
``"coco_folder"`` (COCO JSON + images) and the TFDS ``"coco/2017"`` and
``"voc/2007"`` datasets. All yield the same *source examples* (see
:mod:`keras_pyramids.data.dataset`), which :func:`make_detection_pipeline` and
:func:`make_inference_pipeline` turn into model inputs.
"""

from keras_pyramids.data.dataset import (  # noqa: F401
    DATASET_NAMES,
    DetectionDataset,
    load_dataset,
    validate_boxes,
)
from keras_pyramids.data.pipeline import (  # noqa: F401
    make_detection_pipeline,
    make_inference_pipeline,
)
