"""The Region Proposal Network head (Ren et al., "Faster R-CNN", section 3.1, Figure 3)."""

import keras
from keras import layers

from keras_pyramids.heads.base import LevelSharedPredictor, predictor_convs


def _small_normal():
    # Faster R-CNN section 3.1.3: new layers start from N(0, 0.01) with zero bias.
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.01)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class RPNHead(LevelSharedPredictor):
    """A 3x3 conv and ReLU, then sibling 1x1 convs: objectness and box deltas per anchor.

    Faster R-CNN section 3.1: "we slide a small network over the conv feature
    map [...] mapped to a lower-dimensional feature [...] fed into two sibling
    fully-connected layers -- a box-regression layer (reg) and a
    box-classification layer (cls)", implemented as a 3x3 conv followed by two
    1x1 convs. With FPN (Lin et al. 2017, section 4.1) the same head, weights
    shared, runs on every level. Objectness is one sigmoid logit per anchor
    (as detectron2's ``StandardRPNHead`` and torchvision, not the paper's
    two-way softmax). All convs start from ``N(0, 0.01)`` weights and zero biases.

    Args:
        num_anchors: anchors per location (3 aspect ratios on each FPN level;
            15 = 5 sizes x 3 ratios on the single C4 level).
        depth: channels of the 3x3 conv (the input depth in the references).

    Input: list of ``L`` maps ``[B, h_l, w_l, C]``. Output:
    ``{"boxes": [B, N, 4] deltas, "classes": [B, N, 1] objectness logits}``,
    ``N = num_anchors * sum_l h_l * w_l`` in the anchor order of
    :mod:`keras_pyramids.ops.anchors`.
    """

    def __init__(self, num_anchors=3, depth=256, **kwargs):
        # Prior probability 0.5 is a zero objectness bias, the references' init.
        super().__init__(1, num_anchors, depth, class_prior_probability=0.5, **kwargs)
        self.conv = layers.Conv2D(self.depth, 3, padding="same", activation="relu",
                                  kernel_initializer=_small_normal(), name="rpn_conv")
        self.box_conv, self.class_conv = predictor_convs(
            self.num_anchors, 1, 1, self.class_prior_probability, kernel_initializer=_small_normal
        )

    def build(self, input_shape):
        shape = (None, None, None, self.level_depth(input_shape))
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        self.box_conv.build(shape)
        self.class_conv.build(shape)

    def predict_level(self, x, level, training=None):
        x = self.conv(x)
        return self.box_conv(x), self.class_conv(x)

    def get_config(self):
        config = super().get_config()
        # Fixed by the head itself: one objectness logit, zero bias.
        del config["num_classes"], config["class_prior_probability"]
        return config
