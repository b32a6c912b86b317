"""Kill-safe training: atomic checkpoint writes, and a SIGKILLed run resumed step-exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_pyramids import build_model
from keras_pyramids.training import TrainConfig, make_optimizer
from keras_pyramids.training.checkpoints import (
    TMP_PREFIX,
    AtomicBackupAndRestore,
    EpochCheckpoint,
    resume_plan,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tiny run of the kill test: 64 shapes at 64x64, batch 8 -> 8 steps per epoch.
EPOCHS, BATCH, NUM_EXAMPLES, SIZE = 3, 8, 64, 64
STEPS = NUM_EXAMPLES // BATCH
MODEL_KWARGS = {"depth_multiplier": 0.25, "predictor_depth": 64}


def _fresh_model(config=None, total_steps=EPOCHS * STEPS):
    """A new model of the tiny config with built optimizer variables (all zero, step 0)."""
    config = config or TrainConfig(learning_rate=0.01, model_dir="unused")
    model = build_model("ppn_mobilenet", num_classes=4, image_size=SIZE, **MODEL_KWARGS)
    model.compile(optimizer=make_optimizer(config, total_steps), jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    return model


def _step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _temporaries(root):
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names
            if n.startswith(TMP_PREFIX)]


# -- units ----------------------------------------------------------------------

def test_resume_plan_finishes_the_half_done_epoch():
    assert resume_plan(0, 8) == (0, 8)
    assert resume_plan(8, 8) == (1, 8)  # epoch boundary: a whole epoch next
    assert resume_plan(13, 8) == (1, 3)  # 5 of epoch 2's 8 steps done
    assert resume_plan(24, 8) == (3, 8)


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _fresh_model()
    checkpoint = EpochCheckpoint(str(tmp_path))
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0)
    saved = [np.array(v) for v in model.weights]
    path = checkpoint.path(1)

    # Change the weights, then crash after the temporary file is half written.
    for variable in model.trainable_variables:
        variable.assign(variable + 1.0)

    def crash(self, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n half a file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(keras.Model, "save_weights", crash)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.on_epoch_end(0)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["epoch_001.weights.h5"]  # no temporary left
    restored = _fresh_model()
    restored.load_weights(path)
    for before, after in zip(saved, restored.weights):
        np.testing.assert_array_equal(before, np.array(after))


def test_stale_temporary_of_a_killed_write_is_removed_and_backup_restores_its_step(tmp_path):
    model = _fresh_model()
    model.optimizer.iterations.assign(13)
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"), steps_per_epoch=STEPS, save_freq=2)
    backup.set_model(model)
    backup._save_model()
    metadata = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata == {"epoch": 1, "batch": 5, "step": 13}
    # A kill during the next backup leaves its temporary file (as atomic_path names it) behind.
    stale = str(tmp_path / "backup" / f"{TMP_PREFIX}99999-latest.weights.h5")
    with open(stale, "wb") as f:
        f.write(b"partial")
    assert _temporaries(tmp_path) == [stale]

    resumed = AtomicBackupAndRestore(str(tmp_path / "backup"), steps_per_epoch=STEPS, save_freq=2)
    fresh = _fresh_model()
    assert resumed.restore(fresh) == 13
    resumed.on_train_begin()
    assert fresh._initial_epoch == 1
    assert _temporaries(tmp_path) == []
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


# -- the kill test ------------------------------------------------------------------

def _train_command(model_dir):
    return [
        sys.executable, "-m", "keras_pyramids.cli", "train",
        "--model", "ppn_mobilenet", "--model-kwargs", json.dumps(MODEL_KWARGS),
        "--dataset", "shapes",
        "--dataset-kwargs", json.dumps({"num_examples": NUM_EXAMPLES, "image_size": SIZE}),
        "--image-size", str(SIZE), "--batch-size", str(BATCH), "--epochs", str(EPOCHS),
        "--optimizer", "sgd", "--learning-rate", "0.01", "--warmup-steps", "2", "--no-augment", "--seed", "1",
        "--backup-every-steps", "2", "--num-visualize", "0", "--eval-max-examples", "8",
        "--model-dir", str(model_dir),
    ]


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


@pytest.mark.slow
def test_sigkilled_run_restarts_and_finishes_with_the_expected_steps(tmp_path):
    model_dir = tmp_path / "run"
    metadata_path = model_dir / "backup" / "training_metadata.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(_train_command(model_dir), cwd=str(tmp_path), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Kill as soon as a mid-epoch backup after the first epoch exists, i.e. a
    # moment when the process is between two backups inside an epoch.
    deadline = time.time() + 60
    killed_metadata = None
    while time.time() < deadline and process.poll() is None:
        metadata = _read_json(metadata_path)
        if metadata and metadata["epoch"] >= 1 and metadata["batch"] > 0:
            process.send_signal(signal.SIGKILL)
            killed_metadata = metadata
            break
        time.sleep(0.01)
    output = process.communicate(timeout=30)[0].decode()
    assert killed_metadata is not None, f"no mid-epoch backup seen before exit:\n{output}"
    assert process.returncode == -signal.SIGKILL

    # After the kill: the latest backup is the one of the metadata (or a newer
    # one written in the last moment), complete and loadable, with its step.
    backup_step = _read_json(metadata_path)["step"]
    assert backup_step >= killed_metadata["step"] and backup_step % STEPS != 0
    probe = _fresh_model()
    probe.load_weights(str(model_dir / "backup" / "latest.weights.h5"))
    assert _step(probe) == backup_step
    history_before = _read_json(model_dir / "history.json")
    assert [e["epoch"] for e in history_before] == list(range(1, backup_step // STEPS + 1))
    assert not (model_dir / "model.keras").exists()

    restarted = subprocess.run(_train_command(model_dir), cwd=str(tmp_path), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    output = restarted.stdout.decode()
    assert restarted.returncode == 0, output
    print(f"killed after the backup at step {backup_step} (epoch {backup_step // STEPS + 1}, "
          f"step {backup_step % STEPS} of {STEPS}); restarted; output:\n{output}")

    # Exactly epochs * steps_per_epoch optimizer steps, each epoch logged once.
    history = _read_json(model_dir / "history.json")
    assert [e["epoch"] for e in history] == list(range(1, EPOCHS + 1))
    assert [e["step"] for e in history] == [STEPS * (i + 1) for i in range(EPOCHS)]
    # Epochs finished before the kill were not trained again.
    assert history[:len(history_before)] == history_before
    final = keras.saving.load_model(str(model_dir / "model.keras"))
    assert _step(final) == EPOCHS * STEPS

    # Every checkpoint is complete: it loads, with the step of its epoch.
    names = sorted(os.listdir(model_dir / "checkpoints"))
    assert names == [f"epoch_{i:03d}.weights.h5" for i in range(1, EPOCHS + 1)]
    for epoch, name in enumerate(names, 1):
        model = _fresh_model()
        model.load_weights(str(model_dir / "checkpoints" / name))
        assert _step(model) == epoch * STEPS
    assert _temporaries(model_dir) == []
    assert not (model_dir / "backup").exists()
    assert _read_json(model_dir / "metrics.json")["num_images"] == 8
