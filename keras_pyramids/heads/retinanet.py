"""RetinaNet's class and box subnets (Lin et al., "Focal Loss for Dense Object Detection", section 4)."""

import keras
from keras import layers

from keras_pyramids.heads.base import LevelSharedPredictor, predictor_convs

NORMS = ("group",)


def small_normal():
    """``N(0, 0.01)`` weights (section 4.1 "Initialization"); a new object per conv."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.01)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class RetinaNetHead(LevelSharedPredictor):
    """Two subnets, each shared by every pyramid level: classification and box regression.

    Focal loss paper section 4 "Network Architecture" and Figure 3 (c), (d):
    "The classification subnet applies four 3x3 conv layers, each with C
    filters and each followed by ReLU activations, followed by a 3x3 conv
    layer with KA filters. [...] The box regression subnet is identical [...]
    except that it terminates in 4A linear outputs", with separate parameters
    for the two subnets, shared across levels. Section 4.1 "Initialization":
    all new convs get ``N(0, 0.01)`` weights and zero biases, except the final
    classification conv whose bias is ``-log((1 - pi) / pi)``, ``pi = 0.01``.

    ``norm="group"`` adds GroupNormalization (``num_groups``) after each tower
    conv (the tower convs then have no bias), as detectron2's
    ``MODEL.RETINANET.NORM = "GN"`` option; the paper and the default have
    none. GroupNorm's statistics are per image, so one set of norm layers is
    shared by all levels like the convs.

    Args:
        num_classes: foreground classes ``K`` (sigmoid scores, no background).
        num_anchors: anchors per location ``A`` (9: 3 scales x 3 ratios).
        depth: channels ``C`` of the tower convs (256).
        num_convs: tower convs per subnet (4).
        norm: ``None`` or ``"group"``.
        num_groups: groups of the GroupNormalization.
        class_prior_probability: initial foreground probability ``pi``.

    Input: list of ``L`` maps ``[B, h_l, w_l, D]`` (same ``D``). Output:
    ``{"boxes": [B, N, 4], "classes": [B, N, K]}`` float32,
    ``N = A * sum_l h_l * w_l``, in the order level -> y -> x -> anchor.
    """

    def __init__(
        self,
        num_classes,
        num_anchors=9,
        depth=256,
        num_convs=4,
        norm=None,
        num_groups=32,
        class_prior_probability=0.01,
        **kwargs,
    ):
        super().__init__(num_classes, num_anchors, depth, class_prior_probability, **kwargs)
        if norm is not None and norm not in NORMS:
            raise ValueError(f"norm must be None or one of {NORMS}; got {norm!r}.")
        self.num_convs = int(num_convs)
        self.norm = norm
        self.num_groups = int(num_groups)
        self.class_tower = self._tower("class")
        self.box_tower = self._tower("box")
        self.box_conv, self.class_conv = predictor_convs(
            self.num_anchors,
            self.num_classes,
            3,
            self.class_prior_probability,
            kernel_initializer=small_normal,
        )

    def _tower(self, name):
        """``num_convs`` x (3x3 conv, [GroupNorm], ReLU) as a list of layers."""
        tower = []
        for i in range(self.num_convs):
            tower.append(
                layers.Conv2D(
                    self.depth,
                    3,
                    padding="same",
                    use_bias=self.norm is None,
                    kernel_initializer=small_normal(),
                    name=f"{name}_tower_conv_{i}",
                )
            )
            if self.norm == "group":
                tower.append(layers.GroupNormalization(self.num_groups, name=f"{name}_tower_gn_{i}"))
            tower.append(layers.ReLU(name=f"{name}_tower_relu_{i}"))
        return tower

    def build(self, input_shape):
        depth = self.level_depth(input_shape)
        shape = (None, None, None, depth)
        for class_layer, box_layer in zip(self.class_tower, self.box_tower):
            class_layer.build(shape)
            box_layer.build(shape)
            shape = class_layer.compute_output_shape(shape)
        self.box_conv.build(shape)
        self.class_conv.build(shape)

    def predict_level(self, x, level, training=None):
        classes, boxes = x, x
        for class_layer, box_layer in zip(self.class_tower, self.box_tower):
            classes = class_layer(classes)
            boxes = box_layer(boxes)
        return self.box_conv(boxes), self.class_conv(classes)

    def get_config(self):
        config = super().get_config()
        config.update(num_convs=self.num_convs, norm=self.norm, num_groups=self.num_groups)
        return config
