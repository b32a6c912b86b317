"""Held-out evaluation: explicit splits and no evaluation on the training images unless asked."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_pyramids import cli
from keras_pyramids.training.trainer import TrainConfig, train


def _one_file_folder(root, num_images=4):
    """``root/annotations.json`` + ``root/images/``: one split."""
    os.makedirs(os.path.join(root, "images"))
    images, annotations = [], []
    for i in range(num_images):
        Image.fromarray(np.full((32, 48, 3), 40 * i, np.uint8)).save(os.path.join(root, "images", f"{i}.png"))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 48, "height": 32})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 20, 12]})
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}, f)
    return root


def _config(tmp_path, **overrides):
    values = dict(model="ppn_mobilenet", model_kwargs={"depth_multiplier": 0.25}, dataset="coco_folder",
                  data_dir=_one_file_folder(str(tmp_path / "data")), image_size=64, batch_size=2,
                  epochs=1, model_dir=str(tmp_path / "run"), verbose=0)
    values.update(overrides)
    return TrainConfig(**values)


def test_training_with_default_splits_on_a_one_file_folder_is_refused_up_front(tmp_path):
    # Before: "validation" loaded the training file and metrics.json reported
    # training-image AP as validation.
    with pytest.raises(ValueError, match=r"No split 'validation' in COCO folder .*'train'"):
        train(_config(tmp_path))
    assert not os.path.exists(tmp_path / "run" / "model.keras")


def test_evaluating_on_the_training_split_needs_allow_eval_on_train(tmp_path):
    with pytest.raises(ValueError, match=r"shares 4 images with the training data .*allow_eval_on_train"):
        train(_config(tmp_path, eval_split="train"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")  # refused before any training
    args = cli.build_parser().parse_args(["train", "--allow-eval-on-train", "--eval-split", "train"])
    assert cli._train_config_from_args(args).allow_eval_on_train is True
    args = cli.build_parser().parse_args(["train"])
    assert cli._train_config_from_args(args).allow_eval_on_train is False


def test_evaluate_with_an_unknown_split_is_one_line_exit_2(tmp_path, capsys):
    data_dir = _one_file_folder(str(tmp_path / "data"))
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"not read: the split is checked first")
    code = cli.main(["evaluate", str(model_path), "--dataset", "coco_folder", "--data-dir", data_dir,
                     "--split", "no_such_split"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("keras-pyramids: error:")]
    assert "No split 'no_such_split'" in line and "'train'" in line


def test_cli_takes_annotation_files_and_image_folders_per_split(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(
        ["train", "--annotations", "train.json", "--images", "imgs", "--eval-annotations", "val.json",
         "--eval-images", "val_imgs"])
    config = cli._train_config_from_args(args)
    assert config.dataset == "coco_folder" and config.data_dir is None
    assert config.dataset_kwargs["splits"] == {
        "train": {"annotation_file": str(tmp_path / "train.json"), "image_dir": str(tmp_path / "imgs")},
        "validation": {"annotation_file": str(tmp_path / "val.json"), "image_dir": str(tmp_path / "val_imgs")}}
    assert config.model_dir == "runs/ppn_mobilenet_coco_folder"
    for argv, fragment in [
        (["train", "--annotations", "train.json"], "--annotations and --images go together"),
        (["train", "--eval-images", "v"], "--eval-annotations and --eval-images go together"),
        (["train", "--annotations", "a.json", "--images", "i", "--dataset", "voc/2007"], "need --dataset coco_folder"),
        (["train", "--annotations", "a.json", "--images", "i", "--data-dir", "d"], "not both"),
        (["evaluate", "m.keras", "--annotations", "missing.json", "--images", "."],
         "COCO annotation file not found"),
    ]:
        if argv[0] == "evaluate":
            (tmp_path / "m.keras").write_bytes(b"x")
        code = cli.main(argv + (["--model-dir", "unused"] if argv[0] == "train" else []))
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        assert fragment in err, err
