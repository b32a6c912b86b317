"""COCO AP while training: a Keras callback that evaluates every N epochs."""

import keras

from keras_pyramids.evaluation.coco_metrics import evaluate_detector

# COCO stats added to the epoch logs, as "val_" + name.
LOGGED_STATS = ("AP", "AP50")


class CocoEvalCallback(keras.callbacks.Callback):
    """Runs :func:`evaluate_detector` every ``every_n_epochs`` epochs and logs ``val_AP``, ``val_AP50``.

    The values are added to the epoch's ``logs`` dict, so callbacks after this
    one in the list (``EpochLogger``, which writes ``history.json``) record
    them; put it before them. Epochs that are not evaluated get no ``val_*``
    keys (not a placeholder value), so a history never shows a stale AP.

    Args:
        dataset: ``keras_pyramids.data.load_dataset(...)`` result (held-out split).
        every_n_epochs: evaluate after epochs ``N, 2N, ...`` (1-based; the
            trainer's final evaluation covers the last epoch anyway).
        batch_size: inference batch size.
        max_examples: evaluate on at most this many images of ``dataset``.
    """

    def __init__(self, dataset, every_n_epochs=1, batch_size=16, max_examples=None):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        self.dataset = dataset
        self.every_n_epochs = int(every_n_epochs)
        self.batch_size = batch_size
        self.max_examples = max_examples
        self.results = {}  # 1-based epoch -> full metrics dict

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        # The model's own jit_compile setting: evaluate_detector would otherwise
        # switch it to the device default and re-trace the predict function.
        metrics = evaluate_detector(self.model, self.dataset, batch_size=self.batch_size,
                                    max_examples=self.max_examples,
                                    jit_compile=bool(self.model.jit_compile))
        self.results[epoch + 1] = metrics
        if logs is not None:
            logs.update({f"val_{name}": float(metrics[name]) for name in LOGGED_STATS})
