"""Choosing a ``tf.distribute`` strategy and whether the train step uses XLA.

README.md, "Multi-worker and TPU training": default strategy on one device, ``MirroredStrategy``
for several GPUs, ``MultiWorkerMirroredStrategy`` across machines (configured by
the ``TF_CONFIG`` environment variable) and ``TPUStrategy`` on TPU.

XLA: on CPU, graph mode with oneDNN was measured 8x faster than XLA for
MobileNet, while Keras 3's ``compile(jit_compile="auto")`` may pick XLA. So the
library always passes ``jit_compile`` explicitly, chosen by
:func:`default_jit_compile` from the strategy's devices: off on CPU, on for GPU
and TPU.
"""

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", tpu=None):
    """Returns the ``tf.distribute.Strategy`` called ``name``.

    Args:
        name: one of :data:`STRATEGIES`.
            ``"default"``: the current (default) strategy, one device.
            ``"mirrored"``: synchronous data parallelism over all local GPUs (or
            the CPU when there is none).
            ``"multi_worker"``: ``MultiWorkerMirroredStrategy``; every worker
            runs the same command with its own ``TF_CONFIG``.
            ``"tpu"``: connects to the TPU ``tpu`` (a name or ``grpc://`` address;
            ``None`` or ``"local"`` for a TPU VM), initialises the TPU system and
            returns a ``TPUStrategy``.
        tpu: TPU name or address, only for ``name="tpu"``.

    Raises:
        ValueError: unknown ``name``, or ``name="tpu"`` and no TPU was found.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            where = f" {tpu!r}" if tpu else ""
            raise ValueError(
                f"No TPU{where} found ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else 'no details'}). "
                "Pass --tpu <name or grpc:// address> or run on a TPU VM."
            ) from error
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")


def strategy_device_type(strategy=None):
    """``"TPU"``, ``"GPU"`` or ``"CPU"``: the kind of device ``strategy`` computes on.

    ``None`` means the current strategy. The default strategy places ops on the
    first GPU when TensorFlow sees one, so it counts as ``"GPU"`` then.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy)):
        return "TPU"
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:
        # The default strategy has no device list: it runs where TensorFlow
        # places ops, i.e. on a GPU / TPU when one is visible.
        devices = [d.name for d in tf.config.list_logical_devices()]
    kinds = {tf.DeviceSpec.from_string(d).device_type for d in devices}
    for kind in ("TPU", "GPU"):
        if kind in kinds:
            return kind
    return "CPU"


def default_jit_compile(strategy=None):
    """Whether to compile the train / predict step with XLA on ``strategy``'s devices.

    ``False`` on CPU (graph mode with oneDNN is faster there), ``True`` on GPU
    and TPU (TPUs need XLA; on GPU it fuses the many small head ops). Pass the
    result to ``model.compile(jit_compile=...)`` explicitly: never leave it to
    Keras' ``"auto"``.
    """
    return strategy_device_type(strategy) != "CPU"


def is_chief(strategy):
    """Whether this process writes the run's files (always, except on multi-worker non-chiefs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def is_multi_worker(strategy):
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy``."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
