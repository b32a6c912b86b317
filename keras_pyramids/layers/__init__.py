"""Keras layers of the zoo; each has ``get_config()`` and saves in ``.keras`` files."""

from keras_pyramids.layers.spp import SpatialPyramidPooling  # noqa: F401
from keras_pyramids.layers.spp import SpatialPyramidRoIPooling  # noqa: F401
