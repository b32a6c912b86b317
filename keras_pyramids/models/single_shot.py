"""The single-shot detector family: PPN, SSD, M2Det and RetinaNet are all built as one.

``image -> backbone -> neck -> head -> raw outputs`` with one prediction per
anchor: training compares the raw outputs with per-anchor targets that the
label encoder computes in ``tf.data``; inference decodes them with the same
label encoder's box coder and suppresses duplicates. The anchor generator,
label encoder, loss settings and the suppression layer are objects handed to
the model (as in KerasHub's ``RetinaNetObjectDetector``) and stored in its
config, so a ``.keras`` file, an export and the evaluation use exactly the
settings the model was trained with.
"""

import keras
import numpy as np
from keras import ops

from keras_pyramids.models.detector import Detector, scale_loss_for_replicas
from keras_pyramids.ops import losses as loss_lib
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder
from keras_pyramids.ops.postprocess import DetectionPostProcessor


def _deserialize(value):
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


@keras.saving.register_keras_serializable(package="keras_pyramids")
class SingleShotDetector(Detector, keras.Model):
    """A single-shot detector: backbone, neck, head, anchors, label encoder and suppression.

    Args:
        backbone: ``keras.Model`` mapping images ``[B, H, W, 3]`` (float RGB,
            0..255) to a dict of maps keyed by level (``"C3"`` = stride 8, see
            :mod:`keras_pyramids.backbones`); its input shape fixes the image size.
        neck: layer mapping that dict to a list of maps, largest first.
        head: layer mapping the list to ``{"boxes": [B, N, 4], "classes": [B, N, K]}``
            with ``K = loss_config.num_class_logits(num_classes)`` class logits.
        num_classes: number of foreground classes ``C``.
        anchor_generator: ``generator(feature_shapes, image_size) -> [N, 4]``
            (:class:`~keras_pyramids.ops.anchors.SSDAnchorGenerator` by default).
        label_encoder: :class:`~keras_pyramids.ops.label_encoder.AnchorLabelEncoder`;
            its box coder also decodes the predictions.
        loss_config: :class:`~keras_pyramids.ops.losses.LossConfig` (or its dict):
            the loss, and with it the class-score layout (``C`` sigmoid logits,
            or ``C + 1`` softmax logits with background first) that the head
            predicts and :meth:`decode` reads.
        postprocessor: :class:`~keras_pyramids.ops.postprocess.DetectionPostProcessor`.

    ``model(images)`` returns the raw outputs; ``model.predict(images)`` the
    final detections; ``model.fit`` takes ``(images, {"boxes": [B, N, 4],
    "classes": [B, N]})`` from :meth:`target_assigner` and needs no ``loss``
    in ``compile``.
    """

    def __init__(
        self,
        backbone,
        neck,
        head,
        num_classes,
        anchor_generator=None,
        label_encoder=None,
        loss_config=None,
        postprocessor=None,
        **kwargs,
    ):
        input_shape = tuple(backbone.input_shape[1:])
        if len(input_shape) != 3 or None in input_shape[:2] or input_shape[2] != 3:
            raise ValueError(
                f"A detector needs a fixed image size with 3 channels; the backbone takes {input_shape}."
            )
        images = keras.Input(shape=input_shape, name="images")
        features = neck(backbone(images))
        outputs = head(features)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_classes = int(num_classes)
        self.anchor_generator = anchor_generator or SSDAnchorGenerator()
        self.label_encoder = label_encoder or AnchorLabelEncoder()
        if isinstance(loss_config, dict):
            loss_config = loss_lib.LossConfig(**loss_config)
        self.loss_config = loss_config or loss_lib.LossConfig()
        self.postprocessor = postprocessor or DetectionPostProcessor(name="postprocessor")

        self.image_size = tuple(int(d) for d in input_shape[:2])
        self.feature_shapes = [tuple(int(d) for d in f.shape[1:3]) for f in features]
        self.anchors = np.asarray(self.anchor_generator(self.feature_shapes, self.image_size), np.float32)
        predicted = int(outputs["boxes"].shape[1])
        logits = int(outputs["classes"].shape[-1])
        if logits != self.loss_config.num_class_logits(self.num_classes):
            raise ValueError(
                f"The head predicts {logits} class logits per anchor but the "
                f"{self.loss_config.classification_loss} loss over {self.num_classes} classes needs "
                f"{self.loss_config.num_class_logits(self.num_classes)}; build the head with "
                "loss_config.num_class_logits(num_classes) outputs."
            )
        if predicted != len(self.anchors):
            raise ValueError(
                f"The head predicts {predicted} boxes but the pyramid has {len(self.anchors)} anchors; "
                "check the anchors per location of the head against the anchor generator."
            )
        counts = self.anchor_generator.anchors_per_location(len(self.feature_shapes))
        self.level_sizes = [h * w * a for (h, w), a in zip(self.feature_shapes, counts)]
        # Not tracked as a sub-model: it shares every layer with this model.
        self.__dict__["_feature_model"] = keras.Model(images, features, name="feature_extractor")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        self.class_loss_tracker = keras.metrics.Mean(name="class_loss")
        if self.loss_config.l2_regularization:
            self.l2_loss_tracker = keras.metrics.Mean(name="l2_loss")

    @property
    def feature_extractor(self):
        """``keras.Model``: images -> list of pyramid maps, largest first."""
        return self.__dict__["_feature_model"]

    @property
    def box_coder(self):
        """The box coder of the label encoder: training targets and decoding share it."""
        return self.label_encoder.box_coder

    @property
    def num_anchors(self):
        return len(self.anchors)

    def target_assigner(self):
        """``(boxes [M, 4], classes [M]) -> {"boxes": [N, 4], "classes": [N]}`` for ``tf.data``."""
        return self.label_encoder.bind(self.anchors)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, box_loss, class_loss = loss_lib.detection_loss(y, y_pred, self.num_classes, self.loss_config)
        self.box_loss_tracker.update_state(box_loss)
        self.class_loss_tracker.update_state(class_loss)
        if self.loss_config.l2_regularization:
            l2_loss = loss_lib.l2_kernel_loss(loss_lib.regularized_kernels(self.trainable_variables),
                                              self.loss_config.l2_regularization)
            self.l2_loss_tracker.update_state(l2_loss)
            total = total + l2_loss
        return scale_loss_for_replicas(total)

    def decode(self, outputs):
        """Raw outputs -> ``{"boxes": [B, N, 4], "scores": [B, N, C], "level_sizes"}``.

        Boxes are decoded with the label encoder's box coder and not clipped:
        the post-processor suppresses on the unclipped boxes and clips the
        survivors (as the reference's ``multiclass_non_max_suppression`` with
        a clip window). Scores follow the loss's layout
        (:func:`keras_pyramids.ops.losses.class_scores`).
        """
        anchors = ops.convert_to_tensor(self.anchors)
        boxes = self.box_coder.decode(ops.cast(outputs["boxes"], "float32"), anchors)
        return {
            "boxes": boxes,
            "scores": loss_lib.class_scores(outputs["classes"], self.loss_config),
            "level_sizes": self.level_sizes,
        }

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "neck": keras.saving.serialize_keras_object(self.neck),
            "head": keras.saving.serialize_keras_object(self.head),
            "num_classes": self.num_classes,
            "anchor_generator": keras.saving.serialize_keras_object(self.anchor_generator),
            "label_encoder": keras.saving.serialize_keras_object(self.label_encoder),
            "loss_config": self.loss_config.to_dict(),
            "postprocessor": keras.saving.serialize_keras_object(self.postprocessor),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "neck", "head", "anchor_generator", "label_encoder", "postprocessor"):
            config[key] = _deserialize(config[key])
        return cls(**config)
