"""The anchors a training run builds its model with: the model's own, or fitted to the training boxes.

``TrainConfig.fit_anchors``: ``True`` fits the anchor scales and aspect ratios
to the training split's boxes (:mod:`keras_pyramids.anchor_fitting`);
``False`` (the default) keeps the model's, the ones its paper fixes. Fitting
is not the default because it did not pay where it was measured: on the
built-in small-object set (``scripts/small_data_benchmark.py``) the fit
raised the share of covered boxes from 54% to 66%, yet the same training with
PPN's own anchors reached AP50 0.85 against 0.77-0.80 with the fitted ones.

The fit is written to the run's ``anchor_fit.json`` (coverage before and
after, the fitted settings); a resumed run builds its model from that file,
so the anchors never change within a run. The model stores its anchor
generator in its config: ``model.keras``, exports and evaluations use the
fitted anchors.
"""

import json
import os

from keras_pyramids.anchor_fitting import fit_model_anchors
from keras_pyramids.ops.anchors import FPNAnchorGenerator, SSDAnchorGenerator
from keras_pyramids.registry import build_model, model_parameters
from keras_pyramids.training import run_dir as run_files
from keras_pyramids.training.checkpoints import write_json_atomic

_GENERATORS = {cls.__name__: cls for cls in (SSDAnchorGenerator, FPNAnchorGenerator)}


def takes_anchor_config(model):
    """Whether the factory of registered ``model`` takes ``anchor_config`` (``True`` when it cannot be told)."""
    parameters = model_parameters(model)
    return parameters is None or "anchor_config" in parameters


def check_fit_anchors(config):
    """Refuses ``fit_anchors=True`` for a model whose anchors cannot be set, or next to an explicit
    ``model_kwargs.anchor_config``."""
    if config.fit_anchors is not True:
        return
    if not takes_anchor_config(config.model):
        raise ValueError(f"fit_anchors: {config.model} takes no anchor_config, so its anchors cannot be "
                         "fitted (anchor fitting is for the single-shot models).")
    if "anchor_config" in config.model_kwargs:
        raise ValueError("fit_anchors and model_kwargs.anchor_config both set the anchors; drop one.")


def wants_fit(config):
    """Whether the run fits its anchors (see the module docstring)."""
    return bool(config.fit_anchors)


def _saved_generator(path):
    with open(path) as f:
        saved = json.load(f)
    return _GENERATORS[saved["anchor_generator"]].from_config(saved["fitted"])


def build_run_model(config, train_data, run, chief=True, verbose=True):
    """Builds the run's model, with fitted anchors when :func:`wants_fit` (call inside the strategy's scope).

    Args:
        config: the run's ``TrainConfig``.
        train_data: the training split.
        run: the claimed :class:`~keras_pyramids.training.run_dir.RunDir`.
        chief: this worker writes the run's files.
        verbose: print the coverage before and after the fit.

    Returns:
        The model.
    """
    kwargs = dict(num_classes=train_data.num_classes, image_size=config.image_size, **config.model_kwargs)
    model = build_model(config.model, **kwargs)
    if not wants_fit(config):
        return model
    path = run.file(run_files.ANCHOR_FIT_FILE)
    if os.path.exists(path):  # a resumed run keeps the anchors it started with
        generator = _saved_generator(path)
    else:
        fit = fit_model_anchors(model, train_data)
        if verbose:
            print(fit.format(), flush=True)
        if chief:
            write_json_atomic(path, fit.to_dict())
        generator = fit.generator
    if generator == model.anchor_generator:
        return model
    return build_model(config.model, **kwargs, anchor_config=generator)
