"""The weight-shared box predictor of PPN (paper section 2.1 and section 3)."""

import keras
from keras import layers

from keras_pyramids.blocks import BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM
from keras_pyramids.heads.base import (
    PREDICTOR_INITIALIZER,
    LevelSharedPredictor,
    initializer_config,
    new_initializer,
    predictor_convs,
)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class WeightSharedBoxPredictor(LevelSharedPredictor):
    """One box predictor applied to every pyramid level.

    PPN paper section 2.1 ("Shared Box Predictor") and section 3: "A shared
    1x1 depth 512 convolution is applied before the box classifier and
    location regressor". The tower conv, the classifier and the regressor
    share their weights over levels; the batch norm after the tower conv is
    separate per level, as in the reference implementation
    (``WeightSharedConvolutionalBoxPredictor``), because feature statistics
    differ between pyramid levels.

    Args:
        num_classes: class logits per anchor (the foreground classes ``C`` for
            sigmoid scores, ``C + 1`` for softmax scores; see
            :meth:`keras_pyramids.ops.losses.LossConfig.num_class_logits`).
        num_anchors: anchors per location, the same on every level.
        depth: channels of the shared tower convs.
        num_layers_before_predictor: number of tower convs.
        kernel_size: of tower, classifier and regressor convs.
        class_prior_probability: initial foreground probability (bias init).
        kernel_initializer: of the tower, classifier and regressor convs
            (Keras initializer name or config); default ``N(0, 0.01)``, the
            reference config's ``random_normal_initializer { stddev: 0.01 }``.

    Input: list of ``L`` maps ``[B, h_l, w_l, C]`` (same ``C``). Output:
    ``{"boxes": [B, N, 4], "classes": [B, N, num_classes]}``,
    ``N = num_anchors * sum_l h_l * w_l``.
    """

    def __init__(
        self,
        num_classes,
        num_anchors=6,
        depth=512,
        num_layers_before_predictor=1,
        kernel_size=1,
        class_prior_probability=0.01,
        activation="relu6",
        kernel_initializer=PREDICTOR_INITIALIZER,
        **kwargs,
    ):
        super().__init__(num_classes, num_anchors, depth, class_prior_probability, **kwargs)
        self.num_layers_before_predictor = int(num_layers_before_predictor)
        self.kernel_size = kernel_size
        self.activation = activation
        self.kernel_initializer = initializer_config(kernel_initializer)
        self.tower = [
            layers.Conv2D(depth, kernel_size, padding="same", use_bias=False,
                          kernel_initializer=new_initializer(self.kernel_initializer), name=f"tower_conv_{i}")
            for i in range(self.num_layers_before_predictor)
        ]
        self.act = layers.ReLU(6.0) if activation == "relu6" else layers.Activation(activation)
        self.tower_norms = []  # [layer][level], created in build() once L is known
        self.box_conv, self.class_conv = predictor_convs(
            self.num_anchors, self.num_classes, kernel_size, self.class_prior_probability,
            kernel_initializer=self.kernel_initializer,
        )

    def build(self, input_shape):
        self.level_depth(input_shape)
        shape = tuple(input_shape[0])
        for i, conv in enumerate(self.tower):
            conv.build(shape)
            shape = shape[:-1] + (self.depth,)
            norms = [
                layers.BatchNormalization(
                    epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=f"tower_bn_{i}_level_{level}"
                )
                for level in range(len(input_shape))
            ]
            for norm in norms:
                norm.build(shape)
            self.tower_norms.append(norms)
        self.box_conv.build(shape)
        self.class_conv.build(shape)

    def predict_level(self, x, level, training=None):
        for conv, norms in zip(self.tower, self.tower_norms):
            x = self.act(norms[level](conv(x), training=training))
        return self.box_conv(x), self.class_conv(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers_before_predictor=self.num_layers_before_predictor,
            kernel_size=self.kernel_size,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
        )
        return config
