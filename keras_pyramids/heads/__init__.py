"""Heads: map a list of pyramid levels to box codes ``[B, N, 4]`` and class logits ``[B, N, C]``."""

from keras_pyramids.heads.per_level import PerLevelBoxPredictor  # noqa: F401
from keras_pyramids.heads.retinanet import RetinaNetHead  # noqa: F401
from keras_pyramids.heads.shared import WeightSharedBoxPredictor  # noqa: F401
