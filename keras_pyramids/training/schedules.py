"""Cosine learning-rate decay with linear warm-up.

The PPN MobileNet TPU config of the TF Object Detection API
(``ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync.config``) uses
``cosine_decay_learning_rate { learning_rate_base, total_steps,
warmup_learning_rate, warmup_steps }``, i.e. ``object_detection.utils.
learning_schedules.cosine_decay_with_warmup``::

    step <  warmup_steps:  lr = warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
    step >= warmup_steps:  lr = 0.5 * base_lr * (1 + cos(pi * (step - warmup_steps)
                                                       / (total_steps - warmup_steps)))
    step >  total_steps:   lr = 0

Keras 3's own ``keras.optimizers.schedules.CosineDecay`` with
``initial_learning_rate=warmup_lr``, ``warmup_target=base_lr``,
``warmup_steps=warmup_steps`` and ``decay_steps=total_steps - warmup_steps``
computes exactly this (it clamps the step at ``total_steps``, where the cosine
is already 0 with ``alpha=0``), has ``get_config`` and saves with the
optimizer, so it is used as is rather than re-implemented.
"""

import keras


def cosine_decay_with_warmup(base_learning_rate, total_steps, warmup_learning_rate=0.0,
                             warmup_steps=0, alpha=0.0):
    """Returns the OD API's ``cosine_decay_with_warmup`` as a Keras schedule.

    Args:
        base_learning_rate: peak learning rate, reached at the end of warm-up
            (PPN config: 0.7 for batch 512).
        total_steps: training steps, warm-up included; the rate reaches
            ``alpha * base_learning_rate`` there and stays.
        warmup_learning_rate: rate at step 0 (PPN config: 0.13333).
        warmup_steps: length of the linear warm-up (PPN config: 2000); 0 for none.
        alpha: final rate as a fraction of ``base_learning_rate`` (0 in the OD API).

    Returns:
        ``keras.optimizers.schedules.CosineDecay``.

    Raises:
        ValueError: non-positive rates or ``warmup_steps >= total_steps``.
    """
    total_steps, warmup_steps = int(total_steps), int(warmup_steps)
    if base_learning_rate <= 0:
        raise ValueError(f"base_learning_rate must be > 0, got {base_learning_rate}.")
    if warmup_steps < 0 or warmup_learning_rate < 0:
        raise ValueError("warmup_steps and warmup_learning_rate must be >= 0.")
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps ({total_steps}) must be larger than warmup_steps ({warmup_steps})."
        )
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=float(base_learning_rate),
            decay_steps=total_steps,
            alpha=float(alpha),
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=float(warmup_learning_rate),
        decay_steps=total_steps - warmup_steps,
        alpha=float(alpha),
        warmup_target=float(base_learning_rate),
        warmup_steps=warmup_steps,
    )


@keras.saving.register_keras_serializable(package="keras_pyramids")
class WarmupPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a step (piecewise-constant) schedule.

    ``step < warmup_steps``: ``warmup_lr + (values[0] - warmup_lr) * step /
    warmup_steps``; afterwards ``values[i]`` for ``boundaries[i - 1] < step <=
    boundaries[i]`` (Keras' ``PiecewiseConstantDecay``, which is used: a
    boundary step still has the earlier rate, as M2Det's ``step_lr[i] >= epoch``). The step schedules of SSD (section 3: 1e-3, then 1e-4
    and 1e-5) and of M2Det's reference code (``adjust_learning_rate``: 5 warm-up
    epochs from 1e-6, then ``lr[i]`` up to epoch ``step_lr[i]``); the OD API's
    ``manual_step_learning_rate`` with ``warmup``.

    Args:
        boundaries: increasing steps where the rate changes.
        values: ``len(boundaries) + 1`` rates.
        warmup_learning_rate, warmup_steps: the linear warm-up to ``values[0]``.
    """

    def __init__(self, boundaries, values, warmup_learning_rate=0.0, warmup_steps=0):
        boundaries = [int(b) for b in boundaries]
        values = [float(v) for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"A step schedule needs one more value than boundaries; got {len(boundaries)} "
                             f"boundaries and {len(values)} values.")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])) or any(v <= 0 for v in values):
            raise ValueError(f"Boundaries must increase and values be > 0; got {boundaries}, {values}.")
        if warmup_steps < 0 or warmup_learning_rate < 0 or (boundaries and warmup_steps > boundaries[0]):
            raise ValueError("warmup_steps and warmup_learning_rate must be >= 0, warm-up ending before the "
                             f"first boundary; got {warmup_steps} steps from {warmup_learning_rate}.")
        self.boundaries, self.values = boundaries, values
        self.warmup_learning_rate, self.warmup_steps = float(warmup_learning_rate), int(warmup_steps)
        self._steps = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) if boundaries else None

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = self._steps(step) if self._steps is not None else keras.ops.convert_to_tensor(self.values[0])
        if not self.warmup_steps:
            return rate
        warm = self.warmup_learning_rate + (self.values[0] - self.warmup_learning_rate) * step / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warm, rate)

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values,
                "warmup_learning_rate": self.warmup_learning_rate, "warmup_steps": self.warmup_steps}
