"""Backbones: Keras models mapping images to a dict of named endpoints."""

from keras_pyramids.backbones.mobilenet_v1 import mobilenet_v1  # noqa: F401
