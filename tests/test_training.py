"""Strategy selection, XLA-by-device, optimizer set-up, and train(): checkpoints and resume."""

import json
import os

import keras
import pytest
import tensorflow as tf

from keras_pyramids.training import (
    TrainConfig,
    default_jit_compile,
    get_strategy,
    make_optimizer,
    strategy_device_type,
    train,
)
from keras_pyramids.training.run_dir import MARKER_FILE


# -- strategies ---------------------------------------------------------------

def test_default_and_mirrored_strategies_on_cpu():
    assert get_strategy("default") is tf.distribute.get_strategy()
    assert isinstance(get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    if not tf.config.list_logical_devices("GPU"):
        assert strategy_device_type() == "CPU"
        # The whole point: never XLA on CPU (oneDNN graph mode is 8x faster there).
        assert default_jit_compile() is False
        assert default_jit_compile(get_strategy("mirrored")) is False


def test_unknown_strategy_and_missing_tpu_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'"):
        get_strategy("gpu")
    with pytest.raises(ValueError, match="No TPU"):
        get_strategy("tpu")


# -- config and optimizer ------------------------------------------------------

def test_config_from_json_with_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_comment": "ignored", "model": "ssd_mobilenet", "epochs": 3,
                                "batch_size": 8}))
    config = TrainConfig.from_json(str(path), epochs=5, batch_size=None)
    assert (config.model, config.epochs, config.batch_size) == ("ssd_mobilenet", 5, 8)
    path.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ValueError, match="Unknown config key"):
        TrainConfig.from_json(str(path))
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_json(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_make_optimizer_uses_the_warmup_cosine_schedule():
    config = TrainConfig(optimizer="sgd", learning_rate=0.7, warmup_learning_rate=0.1,
                         warmup_steps=10, momentum=0.9, model_dir="unused")
    optimizer = make_optimizer(config, total_steps=100)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
    assert float(optimizer.learning_rate) == pytest.approx(0.1)  # step 0
    assert isinstance(make_optimizer(TrainConfig(optimizer="adamw", weight_decay=1e-4,
                                                 model_dir="unused"), 10), keras.optimizers.AdamW)


# -- train(): interruption and resume -------------------------------------------

STEPS = 2


def _tiny_config(model_dir, epochs=3):
    # A quarter-width PPN at 96x96 on 32 generated shapes: a few seconds per run.
    return TrainConfig(
        model="ppn_mobilenet",
        model_kwargs={"depth_multiplier": 0.25, "predictor_depth": 64},
        dataset="shapes",
        dataset_kwargs={"num_examples": 32, "image_size": 96},
        image_size=96, batch_size=16, epochs=epochs, learning_rate=0.01, warmup_steps=2,
        augment=False, seed=1, model_dir=str(model_dir), verbose=0, num_visualize=0,
    )


class _Interrupt(keras.callbacks.Callback):
    """Simulates a crash in the middle of epoch 2 (0-based epoch 1, after its first batch)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            raise KeyboardInterrupt("simulated interruption")


class _FirstEpoch(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.started_at_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs = getattr(self, "epochs", []) + [epoch]


@pytest.mark.slow
def test_interrupted_run_resumes_from_last_epoch_and_never_overwrites(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()  # an empty folder of the user's may be the run's
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_config(model_dir), callbacks=[_Interrupt()], evaluate=False)
    assert os.path.exists(model_dir / "backup")  # BackupAndRestore state of epoch 1
    assert os.path.exists(model_dir / "checkpoints" / "epoch_001.weights.h5")
    assert not os.path.exists(model_dir / "model.keras")

    probe = _FirstEpoch()
    result = train(_tiny_config(model_dir), callbacks=[probe], evaluate=False)
    # Continues with epoch 2 (index 1), not 0, with the optimizer's step count restored.
    assert result.initial_epoch == 1
    assert probe.epochs == [1, 2]
    assert probe.started_at_step == STEPS
    assert int(result.model.optimizer.iterations.numpy()) == 3 * STEPS
    assert [e["epoch"] for e in result.history] == [1, 2, 3]
    history = json.loads((model_dir / "history.json").read_text())
    assert [e["step"] for e in history] == [STEPS, 2 * STEPS, 3 * STEPS]
    assert all("loss" in e and "box_loss" in e for e in history)
    assert sorted(os.listdir(model_dir / "checkpoints")) == [
        "epoch_001.weights.h5", "epoch_002.weights.h5", "epoch_003.weights.h5"]
    assert not os.path.exists(model_dir / "backup")  # removed once the run finished
    assert result.model.jit_compile is default_jit_compile()
    # A file the user added to the run's folder meanwhile is left alone.
    user_file = model_dir / "notes.txt"
    user_file.write_text("mine")
    # The training data's categories, for predictions that name their classes.
    categories = json.loads((model_dir / "categories.json").read_text())["categories"]
    assert [c["name"] for c in categories] == ["circle", "square", "triangle", "cross"]

    restored = keras.saving.load_model(result.model_path)
    assert restored.count_params() == result.model.count_params()
    # The CLI evaluates the saved model on the run's held-out split and draws it.
    png = tmp_path / "eval.png"
    from keras_pyramids import cli

    assert cli.main(["evaluate", result.model_path, "--max-examples", "8", "--png", str(png)]) == 0
    assert png.stat().st_size > 0
    assert cli.main(["evaluate", result.model_path, "--png", str(png)]) == 2  # never overwritten

    # A finished run is never overwritten.
    with pytest.raises(FileExistsError, match="finished run"):
        train(_tiny_config(model_dir), evaluate=False)
    assert user_file.read_text() == "mine"


def test_resume_with_different_setting_is_refused(tmp_path):
    model_dir = tmp_path / "run"
    (model_dir / "backup").mkdir(parents=True)
    (model_dir / MARKER_FILE).write_text(json.dumps({"state": "training"}))
    config = _tiny_config(model_dir)
    (model_dir / "train_config.json").write_text(json.dumps(dict(config.to_dict(), batch_size=4)))
    with pytest.raises(ValueError, match="different batch_size"):
        train(config, evaluate=False)
