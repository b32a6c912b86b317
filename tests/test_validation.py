"""Every setting is checked before anything is built: one message naming the setting and what it takes."""

import json
import math

import pytest

import keras_pyramids as kp
from keras_pyramids import cli
from keras_pyramids.registry import _accepted_parameters, check_model_kwargs
from keras_pyramids.training import TrainConfig


@pytest.mark.parametrize("values, message", [
    ({"epochs": "2"}, r"epochs must be an int >= 1; got '2' \(str\)"),
    ({"batch_size": 2.5}, r"batch_size must be an int >= 1; got 2.5 \(float\)"),
    ({"batch_size": True}, r"batch_size must be an int >= 1; got True \(bool\)"),
    ({"learning_rate": "0.01"}, r"learning_rate must be a finite number > 0; got '0.01' \(str\)"),
    ({"learning_rate": math.nan}, r"learning_rate must be a finite number > 0; got nan"),
    ({"learning_rate": math.inf}, r"learning_rate must be a finite number > 0; got inf"),
    ({"learning_rate": 0}, r"learning_rate must be a finite number > 0; got 0"),
    ({"warmup_learning_rate": -0.1}, r"warmup_learning_rate must be a finite number >= 0"),
    ({"momentum": 1.5}, r"momentum must be a finite number >= 0 and < 1; got 1.5"),
    ({"weight_decay": math.nan}, r"weight_decay must be a finite number >= 0"),
    ({"clipnorm": 0}, r"clipnorm must be a finite number > 0 or null"),
    ({"steps_per_epoch": 0}, r"steps_per_epoch must be an int >= 1 or null"),
    ({"verbose": 5}, r"verbose must be an int >= 0 and <= 2; got 5"),
    ({"augment": "yes"}, r"augment must be true or false; got 'yes' \(str\)"),
    ({"seed": 1.5}, r"seed must be an int or null; got 1.5"),
    ({"visualize_score_threshold": 2}, r"visualize_score_threshold must be a finite number >= 0 and <= 1"),
    ({"image_size": [300, 300, 3]}, r"image_size must be an int or \(height, width\)"),
    ({"image_size": 2.5}, r"image_size must be an int or \(height, width\)"),
    ({"optimizer": "adm"}, r"Unknown optimizer 'adm'. Did you mean 'adam'"),
    ({"dataset": "coco_foldr"}, r"Unknown dataset 'coco_foldr'. Did you mean 'coco_folder'"),
    ({"model": "sppnet_zf5"}, r"sppnet_zf5 is a classifier, not a detector"),
    ({"model_kwargs": {"depth_multiplyer": 0.5}},
     r"Unknown model_kwargs key for ppn_mobilenet: 'depth_multiplyer'. Did you mean 'depth_multiplier'"),
    ({"model_kwargs": {"depth_multiplier": 0}}, r"model_kwargs.depth_multiplier must be a finite number > 0"),
    ({"model_kwargs": {"num_classes": 3}}, r"model_kwargs may not set num_classes"),
    ({"model_kwargs": "depth_multiplier=0.5"}, r"model_kwargs must be a dict"),
    ({"dataset_kwargs": {"num_exemples": 8}},
     r"Unknown dataset_kwargs key for shapes: 'num_exemples'. Did you mean 'num_examples'"),
    ({"dataset_kwargs": {"split": "train"}}, r"dataset_kwargs may not set split"),
    ({"dataset_kwargs": {"image_size": 2.5}}, r"dataset_kwargs.image_size must be an int; got 2.5"),
    ({"dataset_kwargs": {"empty_fraction": "0.5"}}, r"dataset_kwargs.empty_fraction must be a finite number"),
    ({"epoch": 3}, r"Unknown config key: 'epoch'. Did you mean 'epochs'"),
    ({"model_dir": ""}, r"model_dir must be a non-empty string"),
])
def test_bad_config_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(dict({"model_dir": "unused"}, **values))


def test_config_fields_changed_after_construction_are_checked_by_train(tmp_path):
    from keras_pyramids.training import train

    config = TrainConfig(model_dir=str(tmp_path / "run"))
    config.learning_rate = float("nan")
    with pytest.raises(ValueError, match="learning_rate"):
        train(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 0}, r"num_classes must be an int >= 1; got 0"),
    ({"num_classes": -1}, r"num_classes must be an int >= 1; got -1"),
    ({"num_classes": 2.5}, r"num_classes must be an int >= 1; got 2.5 \(float\)"),
    ({"num_classes": True}, r"num_classes must be an int >= 1; got True \(bool\)"),
    ({"depth_multiplier": 0}, r"depth_multiplier must be a finite number > 0; got 0"),
    ({"depth_multiplier": -0.5}, r"depth_multiplier must be a finite number > 0"),
    ({"depth_multiplier": float("nan")}, r"depth_multiplier must be a finite number > 0; got nan"),
    ({"image_size": 0}, r"image_size must be an int or \(height, width\) of positive ints"),
    ({"predictor_depth": "64"}, r"predictor_depth must be an int >= 1; got '64' \(str\)"),
    ({"base_depth": 1.5}, r"base_depth must be an int; got 1.5"),
    ({"depth_multiplyer": 0.5}, r"Unknown argument of ppn_mobilenet: 'depth_multiplyer'. "
                                r"Did you mean 'depth_multiplier'\?"),
])
def test_build_model_checks_arguments_before_building(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kp.build_model("ppn_mobilenet", **kwargs)


def _inner(width=1.0, depth=2, name=None):
    return width, depth, name


def _outer(num_classes=3, **kwargs):
    return _inner(name="fixed", **kwargs)


def _opaque(num_classes=3, **kwargs):
    return dict(kwargs)


def test_forwarded_kwargs_are_followed_to_the_function_that_takes_them():
    # _outer(num_classes, **kwargs) -> _inner(name=..., **kwargs): name is set by _outer itself.
    assert set(_accepted_parameters(_outer)) == {"num_classes", "width", "depth"}
    assert _accepted_parameters(_opaque) is None  # not followable: only the values are checked
    # The M2Det factories forward into a neck's keyword dict: values of known names are still checked.
    with pytest.raises(ValueError, match="num_classes must be an int >= 1; got 0"):
        check_model_kwargs("m2det_vgg320", {"num_classes": 0})
    with pytest.raises(ValueError, match="backbone_width must be a finite number > 0"):
        check_model_kwargs("m2det_vgg320", {"backbone_width": -1})
    with pytest.raises(ValueError, match=r"tum_channels must be an int >= 1; got 2.5"):
        check_model_kwargs("m2det_vgg320", {"tum_channels": 2.5})


def _one_line(capsys, code, *fragments):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("keras-pyramids: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_cli_refuses_bad_values_before_writing_anything(capsys, tmp_path):
    run = tmp_path / "run"
    _one_line(capsys, cli.main(["train", "--learning-rate", "nan", "--model-dir", str(run)]),
              "learning_rate must be a finite number > 0; got nan")
    _one_line(capsys, cli.main(["train", "--model-kwargs", '{"depth_multiplyer": 0.5}', "--model-dir", str(run)]),
              "Did you mean 'depth_multiplier'?")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epochs": "2", "model_dir": str(run)}))
    _one_line(capsys, cli.main(["train", "--config", str(config)]), "epochs must be an int >= 1; got '2'")
    assert not run.exists()


def test_cli_evaluate_checks_numbers_and_outputs_before_loading(capsys, tmp_path):
    model = str(tmp_path / "missing.keras")  # never reached: the arguments are checked first
    _one_line(capsys, cli.main(["evaluate", model, "--batch-size", "0"]), "--batch-size must be an int >= 1; got 0")
    _one_line(capsys, cli.main(["evaluate", model, "--max-examples", "-1"]), "--max-examples must be an int >= 1")
    existing = tmp_path / "metrics.json"
    existing.write_text("mine")
    _one_line(capsys, cli.main(["evaluate", model, "--output-json", str(existing)]), "metrics.json already exists")
    assert existing.read_text() == "mine"


def test_cli_traceback_flag_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="learning_rate"):
        cli.main(["train", "--learning-rate", "nan", "--model-dir", str(tmp_path), "--traceback"])
    with pytest.raises(ValueError, match="learning_rate"):
        cli.main(["--traceback", "train", "--learning-rate", "nan", "--model-dir", str(tmp_path)])
