"""The trivial neck: backbone maps passed on as they are."""

import keras


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
