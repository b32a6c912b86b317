"""keras-pyramids: feature-pyramid detectors and classifiers for Keras 3.

Quick start::

    import keras_pyramids as kp
    kp.list_models()
    model = kp.build_model("ppn_mobilenet", num_classes=90, image_size=300)
"""

__version__ = "0.1.0"

from keras_pyramids.registry import build_model, list_models, register_model  # noqa: E402,F401
from keras_pyramids import models as _models  # noqa: E402,F401  (fills the registry)
