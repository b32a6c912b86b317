"""Training: settings, ``tf.distribute`` strategies, optimizers, the run directory and the ``fit`` loop."""

from keras_pyramids.training.config import TrainConfig  # noqa: F401
from keras_pyramids.training.optimizers import OPTIMIZERS, make_optimizer  # noqa: F401
from keras_pyramids.training.run_evaluation import evaluate_run  # noqa: F401
from keras_pyramids.training.schedules import cosine_decay_with_warmup  # noqa: F401
from keras_pyramids.training.strategy import (  # noqa: F401
    STRATEGIES,
    default_jit_compile,
    get_strategy,
    strategy_device_type,
)
from keras_pyramids.training.trainer import TrainResult, train  # noqa: F401
