"""Loading the zoo's saved ``.keras`` models."""

import os
import zipfile

import keras

from keras_pyramids import models  # noqa: F401  (registers the serializable classes)


def load_model(path):
    """Loads a ``.keras`` model saved by this package, without its optimizer.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a ``.keras`` file, or one this package cannot load.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model file {path} does not exist.")
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise ValueError(f"{path} is not a .keras file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras archive (a .keras file is a zip file); is it "
                         "damaged or only partly copied?")
    try:
        return keras.saving.load_model(path, compile=False)
    except (TypeError, ValueError, KeyError) as error:
        # Keras' message ends with the whole model config; the first sentence names the problem.
        reason = str(error).split(" Full object config:")[0].split(". ")[0][:300]
        raise ValueError(f"{path} cannot be loaded as a keras-pyramids model ({reason}). Was it "
                         "saved by another version of the package?") from None
