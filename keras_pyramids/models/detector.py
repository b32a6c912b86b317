"""What every detector family of the zoo shares: the public protocol and its plumbing.

Training, evaluation, export and the command line talk to a detector only
through this protocol, never through its internals:

- ``model.image_size`` ``(H, W)``, ``model.num_classes``, ``model.kind == "detector"``;
- ``model(images)`` raw outputs, ``model.predict(images)`` / ``predict_on_batch``
  final detections ``{"boxes": [B, K, 4] normalised yxyx, "scores": [B, K],
  "classes": [B, K] int32, "num_detections": [B] int32}``;
- ``model.decode(raw_outputs)`` -> ``{"boxes": [B, N, 4], "scores": [B, N, C]}``,
  the candidates before suppression, and ``model.postprocessor``, the
  suppression layer (an export that runs suppression outside a TFLite file uses
  the two apart);
- ``model.target_assigner()``: a ``(boxes [M, 4], classes [M]) -> targets``
  callable for the ``tf.data`` training pipeline; ``model.fit`` needs no loss.

:class:`Detector` implements the parts that do not depend on the family:
input checks, the predict step (never XLA-compiled: the NMS ops have no XLA
kernel), and the work-arounds Keras 3.15's ``fit`` needs under
``MultiWorkerMirroredStrategy``. The single-shot family is
:class:`keras_pyramids.models.single_shot.SingleShotDetector`.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_pyramids.image_size import to_hw
from keras_pyramids.models.inputs import check_pixel_values


def scale_loss_for_replicas(loss):
    """Divides a per-replica loss by the replica count so summed gradients average.

    Keras' built-in losses do this inside ``compute_loss``; a custom
    ``compute_loss`` has to do it itself under ``tf.distribute``.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def _is_multi_worker(strategy):
    if strategy is None or keras.backend.backend() != "tensorflow":
        return False
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def with_batch_axis_for_multi_worker(logs, strategy):
    """Gives scalar step logs a length-1 batch axis under MultiWorkerMirroredStrategy.

    Keras 3.15 averages step outputs across workers with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on scalars ("Invalid
    reduction dimension 0 for input with 0 dimensions"); with the axis, the mean
    over workers is again a scalar.
    """
    if not _is_multi_worker(strategy):
        return logs
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


class Detector:
    """Base class of the detector families (see the module docstring for the protocol).

    A mixin listed before ``keras.Model`` (``class SingleShotDetector(Detector,
    keras.Model)``), not a ``keras.Model`` subclass: Keras 3 turns a functional
    subclass into a ``Functional`` one by rewriting the ``__bases__`` of every
    class between it and ``keras.Model`` for the whole process, which would
    give the subclassed two-stage family ``Functional``'s ``__init__``.

    Subclasses build a functional model in ``__init__`` (``super().__init__(
    inputs=images, outputs=raw_outputs)``), set ``image_size`` and
    ``num_classes`` and implement ``decode``, ``target_assigner`` and
    ``compute_loss``.
    """

    kind = "detector"
    # Candidates per pyramid level in ``decode``'s order, for per-level pre-NMS
    # selection (single-shot family); None where candidates have no levels.
    level_sizes = None

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
        check_pixel_values(images, self.name)

    def __call__(self, inputs, *args, **kwargs):
        self.check_images(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self.check_images(x)
        return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self.check_images(x)
        return super().predict_on_batch(x)

    def postprocess(self, outputs):
        """Raw outputs -> final detections (see the module docstring)."""
        return self.postprocessor(**self.decode(outputs))

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
        return with_batch_axis_for_multi_worker(super().train_step(data), self._distribute_strategy)

    def test_step(self, data):
        return with_batch_axis_for_multi_worker(super().test_step(data), self._distribute_strategy)


def check_image_size(image_size, min_size, model_name, multiple_of=None, reason=None):
    """Normalises ``image_size`` (int or ``(H, W)``) and rejects sizes the network cannot take.

    Args:
        min_size: the deepest map's stride: smaller images have no pixel there.
        reason: why ``min_size`` (for the message); default the stride reason.
        multiple_of: where a neck adds maps of neighbouring levels (FPN's
            top-down path, M2Det's FFMv1), both sides must be multiples of the
            deepest stride it fuses.
    """
    height, width = to_hw(image_size)
    if height < min_size or width < min_size:
        raise ValueError(
            f"{model_name} needs images of at least {min_size}x{min_size} pixels "
            f"({reason or f'its deepest feature map has stride {min_size}'}); got {height}x{width}."
        )
    if multiple_of and (height % multiple_of or width % multiple_of):
        raise ValueError(
            f"{model_name} needs image sides that are multiples of {multiple_of} (its neck adds maps of "
            f"strides up to {multiple_of} to each other); got {height}x{width}."
        )
    return height, width
