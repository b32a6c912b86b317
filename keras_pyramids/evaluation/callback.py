"""Validation metrics while training: a Keras callback that evaluates every N epochs."""

import keras

from keras_pyramids.evaluation.evaluator import evaluate_detector
from keras_pyramids.evaluation.protocols import get_protocol


class CocoEvalCallback(keras.callbacks.Callback):
    """Runs :func:`evaluate_detector` every ``every_n_epochs`` epochs and logs its headline metrics.

    The headline metrics are the protocol's summary (COCO: ``val_AP`` ...
    ``val_APl``; logged here: ``val_AP`` and ``val_AP50``; Pascal VOC:
    ``val_mAP``). They are added to the epoch's ``logs`` dict, so callbacks
    after this one in the list (``EpochLogger``, which writes ``history.json``)
    record them; put it before them. Epochs that are not evaluated get no
    ``val_*`` keys (not a placeholder value), so a history never shows a stale
    number.

    Args:
        dataset: ``keras_pyramids.data.load_dataset(...)`` result (held-out split).
        every_n_epochs: evaluate after epochs ``N, 2N, ...`` (1-based; the
            trainer's final evaluation covers the last epoch anyway).
        batch_size: inference batch size.
        max_examples: evaluate on at most this many images of ``dataset``.
        protocol: evaluation protocol (default: the dataset's).
    """

    def __init__(self, dataset, every_n_epochs=1, batch_size=16, max_examples=None, protocol=None):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        self.dataset = dataset
        self.every_n_epochs = int(every_n_epochs)
        self.batch_size = batch_size
        self.max_examples = max_examples
        self.protocol = get_protocol(protocol or dataset.protocol)
        self.results = {}  # 1-based epoch -> full metrics dict

    @property
    def logged_names(self):
        """The metric names added to the logs (with a ``val_`` prefix)."""
        return ("AP", "AP50") if self.protocol.name == "coco" else self.protocol.summary

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        metrics = evaluate_detector(self.model, self.dataset, batch_size=self.batch_size,
                                    max_examples=self.max_examples, protocol=self.protocol.name)
        self.results[epoch + 1] = metrics
        if logs is not None:
            logs.update({f"val_{name}": float(metrics[name]) for name in self.logged_names})
