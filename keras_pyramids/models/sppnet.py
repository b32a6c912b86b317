"""SPP-net classifiers (He et al. 2014, arXiv:1406.4729).

Paper section 2.3 (Fig. 3) replaces the last pooling layer of a convolutional
network by a spatial pyramid pooling layer, so the fully-connected layers see a
vector of fixed length ``C * sum(n^2)`` whatever the input size; section 3.1
uses the 4-level pyramid ``{6x6, 3x3, 2x2, 1x1}`` (50 bins) and section 2.3
("Multi-size training") trains one set of weights on several input sizes.
Both factories therefore take input shape ``(None, None, 3)``.
"""

import keras
from keras import layers

from keras_pyramids.backbones.mobilenet_v1 import mobilenet_v1
from keras_pyramids.backbones.zf import zf5
from keras_pyramids.layers.spp import SpatialPyramidPooling
from keras_pyramids.registry import register_model


def spp_classifier_head(features, num_classes, levels, fc_units, dropout, classifier_activation):
    """SPP -> [dropout -> Dense(ReLU)] per ``fc_units`` -> dropout -> Dense(num_classes).

    ``features`` ``[B, h, w, C]`` (any ``h, w``) -> ``[B, num_classes]`` logits
    (or probabilities with ``classifier_activation="softmax"``). Dropout sits
    before each fully-connected layer, as in the paper's fc6/fc7 (section 3.1).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}.")
    x = SpatialPyramidPooling(levels, name="spp")(features)
    for i, units in enumerate(fc_units):
        x = layers.Dropout(dropout, name=f"fc{6 + i}_dropout")(x)
        x = layers.Dense(units, activation="relu", name=f"fc{6 + i}")(x)
    x = layers.Dropout(dropout, name="classifier_dropout")(x)
    return layers.Dense(num_classes, activation=classifier_activation, name="classifier")(x)


@register_model("sppnet_zf5", kind="classifier")
def sppnet_zf5(
    num_classes=1000,
    levels=(6, 3, 2, 1),
    dropout=0.5,
    fc_units=(4096, 4096),
    classifier_activation=None,
    name="sppnet_zf5",
):
    """SPP-net ZF-5 classifier: ZF-5 conv1..conv5 -> SPP -> fc6 -> fc7 -> classifier.

    Paper Table 1/appendix for ZF-5 and section 3.1 for the head: conv5 gives
    ``[B, h, w, 256]`` (13 x 13 at 224, 10 x 10 at 180), the 4-level pyramid
    ``{6, 3, 2, 1}`` pools it to ``256 * 50 = 12800`` values, followed by
    fc6 and fc7 (4096 units, ReLU, dropout 0.5) and a ``num_classes`` layer.

    Input: float images ``[B, H, W, 3]`` in ``[0, 255]``, any ``H, W >= 27``.
    Output: ``[B, num_classes]`` logits (``classifier_activation=None``).

    Parameters with the defaults and 1000 classes: 77,037,672 =
    conv 3,726,464 + fc6 52,432,896 + fc7 16,781,312 + classifier 4,097,000.
    """
    images = keras.Input(shape=(None, None, 3), name="images")
    features = zf5(input_shape=(None, None, 3), name="zf5")(images)["conv5"]
    logits = spp_classifier_head(
        features, num_classes, levels, tuple(fc_units), dropout, classifier_activation
    )
    return keras.Model(images, logits, name=name)


@register_model("spp_mobilenet", kind="classifier")
def spp_mobilenet(
    num_classes=1000,
    depth_multiplier=1.0,
    levels=(4, 2, 1),
    dropout=0.5,
    fc_units=(),
    level="C5",
    weights=None,
    classifier_activation=None,
    name="spp_mobilenet",
):
    """SPP head (paper section 2.3) on the zoo's MobileNet v1 backbone.

    MobileNet v1 (slim layout) up to ``level`` gives ``[B, h, w, C]``
    (``C5``, slim's ``Conv2d_13_pointwise``: stride 32, ``C = 1024 * depth_multiplier``); the
    SPP layer pools it to ``C * sum(n^2)`` values, then optional
    fully-connected layers ``fc_units`` and the classifier.

    The default pyramid is ``{4, 2, 1}`` rather than the paper's ``{6, 3, 2,
    1}``: at 224 x 224 the stride-32 map is only 7 x 7, so a 6 x 6 level would
    mostly repeat single cells, and with 1024 channels it would add 36,864
    inputs per class to the classifier. No hidden fc layer by default for the
    same reason (MobileNet's own head is a single linear layer).

    Input: float images ``[B, H, W, 3]`` in ``[0, 255]``, any ``H, W >= 1``.
    Output: ``[B, num_classes]`` logits (``classifier_activation=None``).
    ``weights="imagenet"`` loads the MobileNet ImageNet backbone weights
    (downloads them, only when asked).
    """
    images = keras.Input(shape=(None, None, 3), name="images")
    backbone = mobilenet_v1(
        input_shape=(None, None, 3),
        depth_multiplier=depth_multiplier,
        outputs=(level,),
        weights=weights,
    )
    features = backbone(images)[level]
    logits = spp_classifier_head(
        features, num_classes, levels, tuple(fc_units), dropout, classifier_activation
    )
    return keras.Model(images, logits, name=name)
