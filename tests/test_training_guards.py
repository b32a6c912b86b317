"""Training that can learn nothing is refused before it starts; a non-finite loss stops the run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids import cli
from keras_pyramids.data import DetectionDataset
from keras_pyramids.training import TrainConfig, train
from keras_pyramids.training.data_checks import check_learnable
from keras_pyramids.training.nan_guard import NonFiniteLossError


def _config(model_dir, **overrides):
    values = dict(model="ppn_mobilenet", model_kwargs={"depth_multiplier": 0.25, "predictor_depth": 32},
                  dataset_kwargs={"num_examples": 32, "image_size": 64}, image_size=64, batch_size=8,
                  epochs=2, learning_rate=0.01, augment=False, seed=1, model_dir=str(model_dir),
                  verbose=0, num_visualize=0, eval_max_examples=4, backup_every_steps=2)
    values.update(overrides)
    return TrainConfig(**values)


def _dataset(classes_per_image, num_classes=3):
    rows = [np.asarray(c, np.int32) for c in classes_per_image]
    examples = tf.data.Dataset.from_generator(
        lambda: ({"image": np.zeros((8, 8, 3), np.uint8), "classes": c,
                  "boxes": np.tile([[0.1, 0.1, 0.5, 0.5]], (len(c), 1)).astype(np.float32),
                  "image_id": np.int64(i)} for i, c in enumerate(rows)),
        output_signature={"image": tf.TensorSpec([None, None, 3], tf.uint8),
                          "classes": tf.TensorSpec([None], tf.int32),
                          "boxes": tf.TensorSpec([None, 4], tf.float32),
                          "image_id": tf.TensorSpec([], tf.int64)})
    return DetectionDataset(examples, [f"c{i}" for i in range(num_classes)], num_examples=len(rows))


def test_labels_outside_the_class_range_are_refused():
    check_learnable(_dataset([[0, 2], [], [1]]), "ok")
    with pytest.raises(ValueError, match=r"has no boxes in any of its 3 images"):
        check_learnable(_dataset([[], [], []]), "empty")
    with pytest.raises(ValueError, match=r"3 of the 3 boxes of bad have class ids outside 0..2 \(seen 3..7\)"):
        check_learnable(_dataset([[3, 7], [5]]), "bad")
    with pytest.raises(ValueError, match=r"1 of the 3 boxes of some have class ids outside 0..2 \(seen -1..2\)"):
        check_learnable(_dataset([[0, -1], [2]]), "some")


def test_a_split_without_boxes_is_refused_before_anything_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    config = _config(run, dataset_kwargs={"num_examples": 16, "image_size": 64, "empty_fraction": 1.0})
    with pytest.raises(ValueError, match="shapes:train has no boxes in any of its 16 images"):
        train(config)
    assert not run.exists()
    code = cli.main(["train", "--model-dir", str(run), "--dataset-kwargs",
                     '{"num_examples": 16, "image_size": 64, "empty_fraction": 1.0}'])
    err = capsys.readouterr().err
    assert code == 2 and "has no boxes" in err and err.count("\n") == 1
    assert not run.exists()


class _Poison(keras.callbacks.Callback):
    """Makes the weights NaN after global step ``step`` (as a diverging update would)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            variable = self.model.trainable_variables[0]
            variable.assign(tf.fill(variable.shape, np.nan))


def _finite_weights_at_step(path, config):
    from keras_pyramids import build_model
    from keras_pyramids.training import make_optimizer

    model = build_model(config.model, num_classes=4, image_size=config.image_size, **config.model_kwargs)
    model.compile(optimizer=make_optimizer(config, 8), jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    assert all(np.isfinite(np.asarray(w)).all() for w in model.weights)
    return int(model.optimizer.iterations.numpy())


@pytest.mark.slow
def test_non_finite_loss_stops_at_its_step_keeps_the_last_good_files_and_resumes(tmp_path):
    run = tmp_path / "run"
    config = _config(run)  # 4 steps per epoch, backups every 2 steps
    # Poisoned after step 5, so step 6 has a NaN loss; the backup of step 6 is never written.
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 6 \(epoch 2\).*backup \(step 4\)"):
        train(config, callbacks=[_Poison(5)])
    assert _finite_weights_at_step(str(run / "backup" / "latest.weights.h5"), config) == 4
    assert _finite_weights_at_step(str(run / "checkpoints" / "epoch_001.weights.h5"), config) == 4
    assert os.listdir(run / "checkpoints") == ["epoch_001.weights.h5"]
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1] and np.isfinite(history[0]["loss"])
    assert not (run / "model.keras").exists()

    # The same model_dir resumes from the last good backup and finishes.
    result = train(config, evaluate=False)
    assert result.initial_epoch == 1
    assert [e["step"] for e in json.loads((run / "history.json").read_text())] == [4, 8]


@pytest.mark.slow
def test_cli_exits_3_with_one_line_when_the_loss_diverges(tmp_path, capsys):
    code = cli.main(["train", "--model", "ppn_mobilenet", "--model-kwargs",
                     '{"depth_multiplier": 0.25, "predictor_depth": 32}', "--dataset-kwargs",
                     '{"num_examples": 16, "image_size": 64}', "--image-size", "64", "--batch-size", "8",
                     "--epochs", "3", "--learning-rate", "1e30", "--optimizer", "sgd", "--warmup-steps", "0",
                     "--no-augment",
                     "--verbose", "0", "--model-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.count("\n") == 1 and "Training stopped: the loss became" in err and "at step" in err
    assert not (tmp_path / "run" / "model.keras").exists()
