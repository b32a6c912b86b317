"""keras-pyramids: feature-pyramid detectors and classifiers for Keras 3.

Quick start::

    import keras_pyramids as kp
    kp.list_models()
    model = kp.build_model("ppn_mobilenet", num_classes=90, image_size=300)
"""

__version__ = "0.1.0"

from keras_pyramids import startup as _startup  # noqa: E402  (standard library only)

if _startup.launched_as_cli():
    # The command hides TensorFlow's start-up notices; this must happen before
    # the imports below load TensorFlow (the registry is filled eagerly so that
    # `import keras_pyramids` is enough for keras.saving.load_model).
    _startup.import_tensorflow_quietly()

from keras_pyramids.registry import build_model, list_models, register_model  # noqa: E402,F401
from keras_pyramids import models as _models  # noqa: E402,F401  (fills the registry)
