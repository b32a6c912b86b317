"""Stopping a run whose loss or weights stop being finite, before anything broken is saved.

Keras' ``TerminateOnNaN`` (the starting point) either lets the epoch finish
(``stop_training``: the epoch-end backup and checkpoint would then save the
broken weights) or raises a plain ``RuntimeError`` naming the batch of the
epoch. :class:`StopOnNonFiniteLoss` raises :class:`NonFiniteLossError` with the
global step at once; placed first in the callback list it runs before the
backup and checkpoint callbacks of that step, so the last backup and every
checkpoint stay the last good ones. :func:`check_finite_weights` is the second
line: a step whose loss was finite but whose update was not (an overflowing
gradient) is caught before its weights are written.
"""

import keras
import numpy as np


class NonFiniteLossError(RuntimeError):
    """Training stopped because a step's loss (or the weights it produced) was NaN or infinite.

    Attributes:
        step: the 1-based global optimizer step whose loss was not finite.
        value: the loss value (or ``None`` for weights).
    """

    def __init__(self, message, step, value=None):
        super().__init__(message)
        self.step = step
        self.value = value


def _step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN(raise_error=True)`` raising :class:`NonFiniteLossError` with the global step.

    Put it first in ``fit``'s callbacks, so it runs before the callbacks that save.
    """

    def __init__(self):
        super().__init__(raise_error=True)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(np.asarray(loss, np.float64)).all():
            step = _step(self.model)
            raise NonFiniteLossError(f"the loss became {float(np.asarray(loss))} at step {step}",
                                     step, float(np.asarray(loss)))


def check_finite_weights(model):
    """Raises :class:`NonFiniteLossError` if a weight of ``model`` is NaN or infinite (nothing is saved)."""
    for variable in model.weights:
        if not np.isfinite(keras.ops.convert_to_numpy(variable)).all():
            step = _step(model) if model.optimizer is not None else 0
            raise NonFiniteLossError(
                f"the weights became non-finite at step {step} ({variable.path})", step)
