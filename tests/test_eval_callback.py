"""CocoEvalCallback: COCO AP in the epoch logs and history.json every N epochs."""

import json

import pytest

from keras_pyramids import cli
from keras_pyramids.data import load_dataset
from keras_pyramids.evaluation import evaluate_detector
from keras_pyramids.evaluation.callback import CocoEvalCallback
from keras_pyramids.training import TrainConfig, train

EVAL_EXAMPLES = 8


def _tiny_config(model_dir, **overrides):
    # As tests/test_training.py: a quarter-width PPN on 32 shapes, 2 steps per epoch.
    values = dict(
        model="ppn_mobilenet",
        model_kwargs={"depth_multiplier": 0.25, "predictor_depth": 64},
        dataset="shapes",
        dataset_kwargs={"num_examples": 32, "image_size": 96},
        image_size=96, batch_size=16, epochs=4, learning_rate=0.01, warmup_steps=2,
        augment=False, seed=1, model_dir=str(model_dir), verbose=0, num_visualize=0,
        eval_every_epochs=2, eval_max_examples=EVAL_EXAMPLES, eval_batch_size=4,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_every_n_epochs_must_be_positive():
    with pytest.raises(ValueError, match="every_n_epochs"):
        CocoEvalCallback(dataset=None, every_n_epochs=0)
    with pytest.raises(ValueError, match="eval_every_epochs"):
        _tiny_config("unused", eval_every_epochs=-1)


def test_cli_has_the_eval_every_epochs_flag():
    args = cli.build_parser().parse_args(["train", "--eval-every-epochs", "3",
                                          "--backup-every-steps", "50"])
    config = cli._train_config_from_args(args)
    assert (config.eval_every_epochs, config.backup_every_steps) == (3, 50)


@pytest.mark.slow
def test_ap_is_logged_every_n_epochs_into_history(tmp_path):
    config = _tiny_config(tmp_path / "run")
    result = train(config, evaluate=False)

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history == result.history
    evaluated = [e["epoch"] for e in history if "val_AP" in e]
    assert evaluated == [2, 4]  # every 2nd epoch, and only those
    assert all(("val_AP50" in e) == ("val_AP" in e) for e in history)
    for entry in history:
        if "val_AP" in entry:
            assert 0.0 <= entry["val_AP"] <= 1.0 and 0.0 <= entry["val_AP50"] <= 1.0
            # AP at IoU 0.5 alone is never below the average over IoU 0.5:0.95.
            assert entry["val_AP50"] >= entry["val_AP"]

    # The logged numbers are the ones of the trained model (after the last epoch).
    eval_data = load_dataset("shapes", "validation", **config.dataset_kwargs)
    final = evaluate_detector(result.model, eval_data, batch_size=4, max_examples=EVAL_EXAMPLES)
    assert history[-1]["val_AP"] == pytest.approx(final["AP"], abs=1e-9)
    assert history[-1]["val_AP50"] == pytest.approx(final["AP50"], abs=1e-9)
