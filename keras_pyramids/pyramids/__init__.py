"""Pyramids (necks): layers turning backbone endpoints into feature maps, largest first."""

from keras_pyramids.pyramids.m2det import FFMv1, FFMv2, MLFPN, SFAM, TUM  # noqa: F401
from keras_pyramids.pyramids.ppn import PoolingPyramid  # noqa: F401
from keras_pyramids.pyramids.ssd import SSDFeatureMaps  # noqa: F401
from keras_pyramids.pyramids.fpn import FeaturePyramidNetwork  # noqa: F401
