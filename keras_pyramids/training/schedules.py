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
