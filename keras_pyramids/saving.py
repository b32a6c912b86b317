"""Loading the zoo's saved ``.keras`` models."""

import os

import keras

from keras_pyramids import models  # noqa: F401  (registers the serializable classes)


def load_model(path):
    """Loads a ``.keras`` model saved by this package, without its optimizer.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a ``.keras`` file.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file {path} does not exist.")
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise ValueError(f"{path} is not a .keras file.")
    return keras.saving.load_model(path, compile=False)
