"""The second stage's box head: per-RoI features -> class scores over C + 1 and class-specific boxes.

Girshick, "Fast R-CNN" (2015), section 2 and Figure 1: "each feature vector is
fed into a sequence of fully connected layers that finally branch into two
sibling output layers: one that produces softmax probability estimates over K
object classes plus a catch-all background class and another layer that
outputs four real-valued numbers for each of the K object classes".
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_pyramids")
class FastRCNNBoxHead(keras.layers.Layer):
    """Optional fully connected layers, then softmax class logits and class-specific box deltas.

    The FPN detector (Lin et al. 2017, section 4.2: "two hidden 1,024-d
    fully-connected (fc) layers, each followed by ReLU") uses
    ``fc_dims=(1024, 1024)`` on 7x7 RoIAlign crops; the C4 detector (He et al.
    2016, appendix A, detectron2's ``Res5ROIHeads``) runs ResNet's stage 5 on the
    crops and global-average-pools them, so it uses ``fc_dims=()``.
    Initialisation as detectron2: hidden layers Xavier (``c2_xavier_fill``),
    class logits ``N(0, 0.01)``, box deltas ``N(0, 0.001)``, zero biases.

    ``dropout`` (0 by default, as detectron2 and torchvision) drops units after
    each hidden layer's ReLU in training, as Fast R-CNN's VGG16 / SPP-net's
    fc6 and fc7 (``dropout=0.5``).

    Class ``num_classes`` (the last) is background, as in detectron2; foreground
    ids are ``0 .. num_classes - 1`` like everywhere in the package. Box deltas
    are predicted for the foreground classes only (detectron2's
    ``cls_agnostic_bbox_reg=False`` layout, ``4 * num_classes`` outputs).

    Input: ``[B, R, ...]`` per-RoI features (``[B, R, 7, 7, C]`` crops or
    ``[B, R, C]`` pooled vectors). Output: ``{"classes": [B, R, num_classes + 1]
    logits, "boxes": [B, R, num_classes, 4] deltas}``, float32.
    """

    def __init__(self, num_classes, fc_dims=(1024, 1024), dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.fc_dims = tuple(int(d) for d in fc_dims)
        self.dropout = float(dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"FastRCNNBoxHead dropout must be in [0, 1); got {dropout!r}.")
        self.drop = layers.Dropout(self.dropout, name="dropout") if self.dropout else None
        self.hidden = [
            layers.Dense(dim, activation="relu", name=f"fc{i + 1}",
                         kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"))
            for i, dim in enumerate(self.fc_dims)
        ]
        self.class_logits = layers.Dense(
            self.num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="cls_score")
        self.box_deltas = layers.Dense(
            4 * self.num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="bbox_pred")

    def build(self, input_shape):
        features = 1
        for dim in input_shape[2:]:
            features *= int(dim)
        shape = (None, features)
        for layer in self.hidden:
            layer.build(shape)
            shape = (None, layer.units)
        self.class_logits.build(shape)
        self.box_deltas.build(shape)

    def call(self, roi_features, training=None):
        batch, rois = ops.shape(roi_features)[0], ops.shape(roi_features)[1]
        x = ops.reshape(roi_features, (batch * rois, -1))
        for layer in self.hidden:
            x = layer(x)
            if self.drop is not None:
                x = self.drop(x, training=training)
        logits = ops.reshape(self.class_logits(x), (batch, rois, self.num_classes + 1))
        deltas = ops.reshape(self.box_deltas(x), (batch, rois, self.num_classes, 4))
        return {"classes": ops.cast(logits, "float32"), "boxes": ops.cast(deltas, "float32")}

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, fc_dims=list(self.fc_dims), dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="keras_pyramids")
class RoIStageHead(keras.layers.Layer):
    """Runs a ResNet stage on every RoI crop, then global average pooling (the C4 detector's box features).

    He et al. 2016, appendix A ("Object Detection Baselines"): "we use the
    [...] conv5_x layers [...] after RoI pooling"; detectron2's
    ``Res5ROIHeads``: 14x14 RoIAlign crops of C4 go through stage 5 (stride 2,
    so 7x7), then are averaged to one 2048-d vector per RoI.

    Input: ``[B, R, h, w, C]`` crops. Output: ``[B, R, C']`` (``C'`` the stage's
    output channels).
    """

    def __init__(self, stage, **kwargs):
        super().__init__(**kwargs)
        self.stage = keras.saving.deserialize_keras_object(stage) if isinstance(stage, dict) else stage

    def build(self, input_shape):
        if not self.stage.built:  # a deserialised stage arrives built
            self.stage.build((None, *input_shape[2:]))

    def call(self, crops, training=None):
        batch, rois = ops.shape(crops)[0], ops.shape(crops)[1]
        x = ops.reshape(crops, (batch * rois, *crops.shape[2:]))
        x = ops.mean(self.stage(x, training=training), axis=(1, 2))
        return ops.reshape(x, (batch, rois, x.shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update(stage=keras.saving.serialize_keras_object(self.stage))
        return config
