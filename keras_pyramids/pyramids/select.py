"""The trivial neck: backbone maps passed on as they are."""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="keras_pyramids")
class SelectLevels(keras.layers.Layer):
    """Returns the backbone maps ``levels`` as a list, in the given order.

    For detectors whose heads read backbone maps directly, e.g. Faster R-CNN
    C4 (Ren et al. 2015; He et al. 2016 appendix A): the RPN and RoIAlign both
    work on ResNet's ``C4`` (stride 16).

    Input: dict of backbone maps. Output: ``[maps[level] for level in levels]``.
    """

    def __init__(self, levels=("C4",), **kwargs):
        super().__init__(**kwargs)
        self.levels = tuple(levels)
        if not self.levels:
            raise ValueError("SelectLevels needs at least one level key.")

    def call(self, maps):
        missing = [level for level in self.levels if level not in maps]
        if missing:
            raise ValueError(f"The backbone gives no map {missing}; it gives {sorted(maps)}.")
        return [maps[level] for level in self.levels]

    def get_config(self):
        config = super().get_config()
        config.update(levels=list(self.levels))
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ProjectLevels(SelectLevels):
    """The backbone maps ``levels``, each through its own 1x1 convolution to ``channels`` and a ReLU.

    A neck that only changes widths, e.g. ResNet's 2048-channel ``conv5`` to
    the 256 channels of ZF-5's ``conv5`` for the SPP-net detector, whose
    pooled vector (and fc6) then keeps the paper's 12,800 inputs. Kernels
    start Xavier-uniform (Keras' default), biases zero.

    Input: dict of backbone maps. Output: list of ``[B, h, w, channels]``, in
    the order of ``levels``.
    """

    def __init__(self, levels=("C5",), channels=256, **kwargs):
        super().__init__(levels, **kwargs)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"ProjectLevels channels must be a positive int; got {channels!r}.")
        self.channels = channels
        self.projections = [layers.Conv2D(channels, 1, activation="relu", name=f"{level}_project")
                            for level in self.levels]

    def build(self, input_shape):
        for level, projection in zip(self.levels, self.projections):
            projection.build(input_shape[level])

    def call(self, maps):
        return [projection(x) for projection, x in zip(self.projections, super().call(maps))]

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
