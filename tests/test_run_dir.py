"""The run directory is the run's own: a user's folder is refused untouched, a run resumes by its marker."""

import json
import os

import pytest

from keras_pyramids import cli
from keras_pyramids.training import TrainConfig, train
from keras_pyramids.training.run_dir import (
    CONFIG_FILE,
    FINISHED,
    MARKER_FILE,
    TRAINED,
    TRAINING,
    claim_run_dir,
)


def _snapshot(root):
    """{relative path: bytes} of every file under ``root``, and every folder."""
    files = {}
    for directory, folders, names in os.walk(root):
        for name in folders:
            files[os.path.relpath(os.path.join(directory, name), root) + "/"] = None
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def _users_folder(root):
    """The folder of issue 13: the user's own files under the names a run uses."""
    (root / "backup").mkdir(parents=True)
    (root / "backup" / "notes.txt").write_text("my backup")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "epoch_001.weights.h5").write_bytes(b"my weights")
    (root / "metrics.json").write_text('{"mine": 1}')
    (root / "detections.png").write_bytes(b"my picture")
    (root / "train_config.json").write_text('{"mine": 2}')
    return _snapshot(root)


def _tiny_config(model_dir, **overrides):
    values = dict(model="ppn_mobilenet", model_kwargs={"depth_multiplier": 0.25, "predictor_depth": 64},
                  dataset_kwargs={"num_examples": 32, "image_size": 64}, image_size=64, batch_size=16,
                  epochs=1, learning_rate=0.01, augment=False, seed=1, model_dir=str(model_dir),
                  verbose=0, num_visualize=0, eval_max_examples=4)
    values.update(overrides)
    return TrainConfig(**values)


def test_training_into_a_users_folder_is_refused_and_touches_nothing(tmp_path, capsys):
    folder = tmp_path / "mine"
    before = _users_folder(folder)
    with pytest.raises(FileExistsError, match="not a keras-pyramids run.*backup.*new or empty model_dir"):
        train(_tiny_config(folder))
    assert _snapshot(folder) == before
    code = cli.main(["train", "--model-dir", str(folder), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a keras-pyramids run" in err
    assert _snapshot(folder) == before


def test_one_file_of_the_users_is_enough_to_refuse(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ".hidden").write_text("x")
    with pytest.raises(FileExistsError, match=r"\.hidden"):
        claim_run_dir(str(folder), {})
    assert os.listdir(folder) == [".hidden"]


def test_new_or_empty_folder_is_claimed_with_the_marker_first(tmp_path):
    for folder in (tmp_path / "new" / "run", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        run = claim_run_dir(str(folder), {"batch_size": 4})
        assert (run.state, run.resumed) == (TRAINING, False)
        marker = json.loads((folder / MARKER_FILE).read_text())
        assert marker["state"] == TRAINING and marker["written_by"].startswith("keras-pyramids")
        assert json.loads((folder / CONFIG_FILE).read_text()) == {"batch_size": 4}


def test_marked_run_resumes_or_is_evaluated_and_a_finished_one_is_refused(tmp_path):
    folder = tmp_path / "run"
    claim_run_dir(str(folder), {"batch_size": 4})
    (folder / "notes.txt").write_text("added by the user")  # a run's folder may gain user files
    run = claim_run_dir(str(folder), {"batch_size": 4})
    assert (run.state, run.resumed) == (TRAINING, True)
    run.mark(TRAINED)
    assert claim_run_dir(str(folder), {"batch_size": 4}).state == TRAINED
    run.mark(FINISHED)
    with pytest.raises(FileExistsError, match="finished run"):
        claim_run_dir(str(folder), {"batch_size": 4})
    assert (folder / "notes.txt").read_text() == "added by the user"


def test_model_dir_that_is_a_file_or_not_writable(tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("mine")
    with pytest.raises(NotADirectoryError, match="is a file"):
        claim_run_dir(str(file), {})
    with pytest.raises(PermissionError, match="Cannot write the run directory"):
        claim_run_dir(str(file / "run"), {})
    assert file.read_text() == "mine"
    if os.path.isdir("/sys"):  # not writable even by root
        with pytest.raises(PermissionError, match="Cannot write the run directory /sys/kp_run"):
            claim_run_dir("/sys/kp_run", {})


@pytest.mark.slow
def test_run_killed_during_the_final_evaluation_is_only_evaluated_again(tmp_path, monkeypatch):
    from keras_pyramids.training import trainer

    folder = tmp_path / "run"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the evaluation (simulated)")

    monkeypatch.setattr(trainer, "evaluate_run", killed)
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_config(folder))
    monkeypatch.undo()
    model_file = folder / "model.keras"
    saved = model_file.read_bytes()
    assert json.loads((folder / MARKER_FILE).read_text())["state"] == TRAINED
    assert not (folder / "backup").exists() and not (folder / "metrics.json").exists()

    result = train(_tiny_config(folder))
    assert model_file.read_bytes() == saved  # not trained again
    assert result.metrics["num_images"] == 4
    assert json.loads((folder / "metrics.json").read_text())["num_images"] == 4
    assert json.loads((folder / MARKER_FILE).read_text())["state"] == FINISHED
    assert [e["epoch"] for e in result.history] == [1]
