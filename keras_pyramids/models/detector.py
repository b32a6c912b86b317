"""The single-shot detector model every detection family of the zoo is built as.

``image -> backbone -> pyramid -> head -> raw outputs`` (DESIGN.md): training
compares the raw outputs with anchor targets encoded in ``tf.data``;
``predict`` decodes them with the anchors and runs NMS.
"""

import keras
from keras import ops

from keras_pyramids.ops import anchors as anchor_lib
from keras_pyramids.ops import losses as loss_lib
from keras_pyramids.image_size import to_hw
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.ops.target_assigner import TargetAssigner


def _scale_loss_for_replicas(loss):
    """Divides a per-replica loss by the replica count so summed gradients average.

    Keras' built-in losses do this inside ``compute_loss``; a custom
    ``compute_loss`` has to do it itself under ``tf.distribute``.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def _is_multi_worker(strategy):
    if strategy is None or keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _with_batch_axis_for_multi_worker(logs, strategy):
    """Gives scalar step logs a length-1 batch axis under MultiWorkerMirroredStrategy.

    Keras 3.15 averages step outputs across workers with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars ("Invalid
    reduction dimension 0 for input with 0 dimensions"); with the axis, the mean
    over workers is again a scalar.
    """
    if not _is_multi_worker(strategy):
        return logs
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


@keras.saving.register_keras_serializable(package="keras_pyramids")
class Detector(keras.Model):
    """A single-shot detector: backbone, pyramid, head, anchors and post-processing.

    Args:
        backbone: ``keras.Model`` mapping images ``[B, H, W, 3]`` (float, 0..255)
            to a dict of endpoints; its input shape fixes the image size.
        pyramid: layer mapping the endpoint dict to a list of maps, largest first.
        head: layer mapping that list to ``{"boxes": [B, N, 4], "classes": [B, N, C]}``.
        num_classes: number of foreground classes ``C``.
        anchor_config: :class:`keras_pyramids.ops.anchors.AnchorConfig` (or its dict).
        loss_config: :class:`keras_pyramids.ops.losses.LossConfig` (or its dict).
        matcher_config: ``{"matched_threshold", "unmatched_threshold", "force_match"}``.
        postprocessor: :class:`DetectionPostProcessor` (default settings if None).

    ``model(images)`` returns the raw outputs; ``model.predict(images)`` returns
    ``{"boxes": [B, K, 4] normalised [ymin, xmin, ymax, xmax], "scores": [B, K],
    "classes": [B, K] int32, "num_detections": [B] int32}``; ``model.fit`` takes
    ``(images, {"boxes": [B, N, 4], "classes": [B, N]})`` from
    :meth:`target_assigner` and needs no ``loss`` in ``compile``.
    """

    def __init__(
        self,
        backbone,
        pyramid,
        head,
        num_classes,
        anchor_config=None,
        loss_config=None,
        matcher_config=None,
        postprocessor=None,
        **kwargs,
    ):
        input_shape = tuple(backbone.input_shape[1:])
        if len(input_shape) != 3 or None in input_shape[:2] or input_shape[2] != 3:
            raise ValueError(
                f"A detector needs a fixed image size with 3 channels; the backbone takes {input_shape}."
            )
        images = keras.Input(shape=input_shape, name="images")
        features = pyramid(backbone(images))
        outputs = head(features)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        self.backbone = backbone
        self.pyramid = pyramid
        self.head = head
        self.num_classes = int(num_classes)
        if isinstance(anchor_config, dict):
            anchor_config = anchor_lib.AnchorConfig.from_dict(anchor_config)
        self.anchor_config = anchor_config or anchor_lib.AnchorConfig()
        if isinstance(loss_config, dict):
            loss_config = loss_lib.LossConfig(**loss_config)
        self.loss_config = loss_config or loss_lib.LossConfig()
        self.matcher_config = dict(
            {"matched_threshold": 0.5, "unmatched_threshold": 0.5, "force_match": True},
            **(matcher_config or {}),
        )
        self.postprocessor = postprocessor or DetectionPostProcessor(name="postprocessor")

        self.image_size = tuple(int(d) for d in input_shape[:2])
        self.feature_shapes = [tuple(int(d) for d in f.shape[1:3]) for f in features]
        self.anchors = anchor_lib.ssd_anchors(self.feature_shapes, self.image_size, self.anchor_config)
        predicted = int(outputs["boxes"].shape[1])
        if predicted != len(self.anchors):
            raise ValueError(
                f"The head predicts {predicted} boxes but the pyramid has {len(self.anchors)} anchors; "
                "check the anchors per location of the head against the anchor config."
            )
        # Not tracked as a sub-model: it shares every layer with this model.
        self.__dict__["_feature_model"] = keras.Model(images, features, name="feature_extractor")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        self.class_loss_tracker = keras.metrics.Mean(name="class_loss")

    def check_images(self, images):
        """Raises a ValueError naming the problem if ``images`` is not ``[B, H, W, 3]`` at this model's size."""
        shape = getattr(images, "shape", None)
        if shape is None:
            return
        shape = tuple(shape)
        expected = (None,) + self.image_size + (3,)
        if len(shape) != 4:
            raise ValueError(
                f"{self.name} expects a batch of images of shape [batch, {self.image_size[0]}, "
                f"{self.image_size[1]}, 3] (rank 4); got an array of rank {len(shape)} with shape {shape}."
            )
        if shape[-1] is not None and shape[-1] != 3:
            raise ValueError(f"{self.name} expects 3 colour channels (RGB); got {shape[-1]} in shape {shape}.")
        if any(s is not None and e is not None and s != e for s, e in zip(shape[1:3], expected[1:3])):
            raise ValueError(
                f"{self.name} was built for {self.image_size[0]}x{self.image_size[1]} images; got "
                f"{shape[1]}x{shape[2]}. Resize the images (the data pipelines do) or build the model "
                f"with image_size=({shape[1]}, {shape[2]})."
            )

    def __call__(self, inputs, *args, **kwargs):
        self.check_images(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self.check_images(x)
        return super().predict(x, *args, **kwargs)

    @property
    def feature_extractor(self):
        """``keras.Model``: images -> list of pyramid maps, largest first."""
        return self.__dict__["_feature_model"]

    @property
    def num_anchors(self):
        return len(self.anchors)

    def target_assigner(self):
        """The :class:`TargetAssigner` that encodes training targets for this model."""
        return TargetAssigner(self.anchors, **self.matcher_config)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, box_loss, class_loss = loss_lib.detection_loss(
            y, y_pred, self.num_classes, self.loss_config
        )
        self.box_loss_tracker.update_state(box_loss)
        self.class_loss_tracker.update_state(class_loss)
        return _scale_loss_for_replicas(total)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15's TF trainer learns the batch shapes by strategy.reduce("MEAN",
        # first_batch), which MultiWorkerMirroredStrategy cannot do for a nested
        # (images, targets) batch ("Attempt to convert a value (PerReplica...)").
        # This replica's own batch has the same shapes and needs no communication.
        strategy = self._distribute_strategy
        if iterator is None or not _is_multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = keras.tree.map_structure(
                lambda value: strategy.experimental_local_results(value)[0], next(batches)
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def train_step(self, data):
        return _with_batch_axis_for_multi_worker(super().train_step(data), self._distribute_strategy)

    def test_step(self, data):
        return _with_batch_axis_for_multi_worker(super().test_step(data), self._distribute_strategy)

    def postprocess(self, outputs):
        """Raw outputs -> final detections (see class docstring)."""
        anchors = ops.convert_to_tensor(self.anchors)
        return self.postprocessor(outputs["boxes"], outputs["classes"], anchors)

    def make_predict_function(self, force=False):
        # The NMS op (combined_non_max_suppression) has no XLA kernel, so the
        # predict step runs as a plain graph even when training uses XLA
        # (XLA is chosen by device: on for GPU / TPU).
        jit_compile = self._jit_compile
        self._jit_compile = False
        try:
            return super().make_predict_function(force=force)
        finally:
            self._jit_compile = jit_compile

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.postprocess(self(x, training=False))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "pyramid": keras.saving.serialize_keras_object(self.pyramid),
            "head": keras.saving.serialize_keras_object(self.head),
            "num_classes": self.num_classes,
            "anchor_config": self.anchor_config.to_dict(),
            "loss_config": self.loss_config.to_dict(),
            "matcher_config": dict(self.matcher_config),
            "postprocessor": keras.saving.serialize_keras_object(self.postprocessor),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "pyramid", "head", "postprocessor"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def check_image_size(image_size, min_size, model_name):
    """Normalises ``image_size`` (int or ``(H, W)``) and rejects sizes the network cannot take."""
    height, width = to_hw(image_size)
    if height < min_size or width < min_size:
        raise ValueError(
            f"{model_name} needs images of at least {min_size}x{min_size} pixels "
            f"(its deepest feature map has stride {min_size}); got {height}x{width}."
        )
    return height, width
