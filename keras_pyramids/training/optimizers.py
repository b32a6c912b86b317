"""The optimizer of a training run: momentum SGD (the PPN TPU config), Adam or AdamW."""

import keras

from keras_pyramids.training.schedules import WarmupPiecewiseConstant, cosine_decay_with_warmup

OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(config, total_steps):
    """The optimizer of ``config`` (a ``TrainConfig``): cosine-with-warm-up over ``total_steps``, or the
    step schedule of ``learning_rate_boundaries`` / ``learning_rate_values`` after the warm-up."""
    if config.learning_rate_values:
        schedule = WarmupPiecewiseConstant(config.learning_rate_boundaries, config.learning_rate_values,
                                           config.warmup_learning_rate, config.warmup_steps)
    else:
        schedule = cosine_decay_with_warmup(
            config.learning_rate,
            total_steps=total_steps,
            warmup_learning_rate=config.warmup_learning_rate,
            warmup_steps=config.warmup_steps,
        )
    common = dict(learning_rate=schedule, clipnorm=config.clipnorm)
    if config.weight_decay:
        common["weight_decay"] = config.weight_decay
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, **common)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(**dict(common, weight_decay=config.weight_decay))
    raise ValueError(f"Unknown optimizer {config.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
