"""Training: ``tf.distribute`` strategies, learning-rate schedules and the ``fit`` loop."""

from keras_pyramids.training.schedules import cosine_decay_with_warmup  # noqa: F401
from keras_pyramids.training.strategy import (  # noqa: F401
    STRATEGIES,
    default_jit_compile,
    get_strategy,
    strategy_device_type,
)
from keras_pyramids.training.trainer import (  # noqa: F401
    OPTIMIZERS,
    TrainConfig,
    TrainResult,
    evaluate_run,
    make_optimizer,
    train,
)
