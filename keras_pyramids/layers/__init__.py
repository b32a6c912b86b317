"""Keras layers of the zoo; each has ``get_config()`` and saves in ``.keras`` files.

This is the one namespace for composing parts by hand: the modules they live in
are named after their paper (``pyramids/ppn.py``, ``pyramids/m2det.py``, ...).
"""

from keras_pyramids.blocks import ConvBlock  # noqa: F401
from keras_pyramids.heads.per_level import PerLevelBoxPredictor  # noqa: F401
from keras_pyramids.heads.shared import WeightSharedBoxPredictor  # noqa: F401
from keras_pyramids.layers.global_scale_conv import GlobalScaleConv2D  # noqa: F401
from keras_pyramids.layers.scale_decomposed_conv import ScaleDecomposedConv2D  # noqa: F401
from keras_pyramids.layers.spp import SpatialPyramidPooling  # noqa: F401
from keras_pyramids.layers.spp import SpatialPyramidRoIPooling  # noqa: F401
from keras_pyramids.ops.postprocess import DetectionPostProcessor  # noqa: F401
from keras_pyramids.pyramids.m2det import FFMv1, FFMv2, MLFPN, SFAM, TUM  # noqa: F401
from keras_pyramids.pyramids.ppn import PoolingPyramid  # noqa: F401
from keras_pyramids.pyramids.ssd import SSDFeatureMaps  # noqa: F401
