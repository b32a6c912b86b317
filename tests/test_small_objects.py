"""The built-in small-object set (issue 16) through the command line's defaults, from scratch."""

import json

import pytest

from keras_pyramids.training.config import TrainConfig
from keras_pyramids.training.trainer import train


@pytest.mark.slow
def test_cli_defaults_fit_the_anchors_and_learn_on_small_mirror_glyphs(tmp_path):
    # The defaults `keras-pyramids train` starts from, on a small glyphs set at half size, a tiny PPN,
    # flips off (mirror pairs) and --fit-anchors. AP needs minutes of training
    # (scripts/small_data_benchmark.py measures it); here 120 steps must cut both losses.
    config = TrainConfig.from_cli_defaults(
        dataset="glyphs", dataset_kwargs={"num_examples": 160, "image_size": 128, "min_size": 0.1, "max_size": 0.5},
        image_size=128, model_kwargs={"depth_multiplier": 0.25, "predictor_depth": 64}, fit_anchors=True,
        flip=False, epochs=12, warmup_steps=20, eval_max_examples=40, num_visualize=0, verbose=0, seed=0,
        model_dir=str(tmp_path / "run"))
    assert config.optimizer == "adam" and config.batch_size == 16
    result = train(config)
    fit = json.loads((tmp_path / "run" / "anchor_fit.json").read_text())
    assert fit["after"]["matched"] > fit["before"]["matched"] + 0.05
    assert result.model.anchor_generator.min_scale == pytest.approx(fit["fitted"]["min_scale"])
    first, last = result.history[0], result.history[-1]
    assert last["class_loss"] < 0.6 * first["class_loss"] and last["box_loss"] < 0.92 * first["box_loss"]
    assert 0 <= result.metrics["AP50"] <= 1
