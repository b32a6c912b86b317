"""SSD's box predictor: a separate classifier and regressor on every level."""

import keras

from keras_pyramids.heads.base import PREDICTOR_INITIALIZER, concat_levels, initializer_config, predictor_convs


@keras.saving.register_keras_serializable(package="keras_pyramids")
class PerLevelBoxPredictor(keras.layers.Layer):
    """Independent box predictors, one per pyramid level.

    SSD section 2.1 "Convolutional predictors for detection" and PPN paper
    Figure 1 (left): each level has its own conv classifier and regressor
    (``kernel_size`` 1 in the SSD MobileNet v1 reference, 3 in SSD and M2Det,
    whose section "Network Configurations" adds "two convolution layers to each
    of the 6 pyramidal features").

    Args:
        num_classes: class logits per anchor (``C`` sigmoid, or ``C + 1``
            softmax with background first; the loss decides, see
            :meth:`keras_pyramids.ops.losses.LossConfig.num_class_logits`).
        num_anchors: list, anchors per location on each level.
        kernel_size: of the predictor convs.
        class_prior_probability: initial foreground probability (bias init;
            a constant bias on every logit, so a no-op under softmax).
        kernel_initializer: of the predictor convs (Keras initializer name or
            config); default ``N(0, 0.01)`` as the SSD MobileNet v1 reference
            config's ``convolutional_box_predictor``.

    Input: list of ``L`` maps ``[B, h_l, w_l, C_l]``. Output:
    ``{"boxes": [B, N, 4], "classes": [B, N, num_classes]}``,
    ``N = sum_l num_anchors[l] * h_l * w_l``.
    """

    def __init__(self, num_classes, num_anchors, kernel_size=1, class_prior_probability=0.01,
                 kernel_initializer=PREDICTOR_INITIALIZER, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_anchors = [int(a) for a in num_anchors]
        self.kernel_size = kernel_size
        self.class_prior_probability = float(class_prior_probability)
        self.kernel_initializer = initializer_config(kernel_initializer)
        convs = [
            predictor_convs(a, self.num_classes, kernel_size, self.class_prior_probability, suffix=f"_{i}",
                            kernel_initializer=self.kernel_initializer)
            for i, a in enumerate(self.num_anchors)
        ]
        self.box_convs = [box for box, _ in convs]
        self.class_convs = [cls for _, cls in convs]

    def build(self, input_shape):
        if len(input_shape) != len(self.num_anchors):
            raise ValueError(
                f"Got {len(input_shape)} pyramid levels for {len(self.num_anchors)} anchor settings."
            )
        for shape, box_conv, class_conv in zip(input_shape, self.box_convs, self.class_convs):
            box_conv.build(shape)
            class_conv.build(shape)

    def call(self, features):
        box_maps = [conv(x) for conv, x in zip(self.box_convs, features)]
        class_maps = [conv(x) for conv, x in zip(self.class_convs, features)]
        return concat_levels(box_maps, class_maps, self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_anchors=self.num_anchors,
            kernel_size=self.kernel_size,
            class_prior_probability=self.class_prior_probability,
            kernel_initializer=self.kernel_initializer,
        )
        return config
