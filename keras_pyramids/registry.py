"""The model registry: one name per ready-made model, and what kind of model it is.

Names follow ``<family>_<backbone>[_<neck>|_<size>]``. Factories register
themselves with :func:`register_model`; users call :func:`build_model`. The
registry knows each model's kind (:data:`KINDS`), so a tool that needs a
detector can refuse a classifier by name before building anything.
"""

import difflib
import inspect

KINDS = ("detector", "classifier")

_REGISTRY = {}
_KINDS = {}


def register_model(name, kind="detector"):
    """Decorator registering ``factory(**kwargs) -> keras.Model`` under ``name``.

    Args:
        name: the public model name.
        kind: ``"detector"`` (a :class:`keras_pyramids.models.detector.Detector`)
            or ``"classifier"`` (images -> class logits).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; known: {', '.join(KINDS)}.")

    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"Model name {name!r} is registered twice.")
        _REGISTRY[name] = factory
        _KINDS[name] = kind
        return factory

    return wrap


def list_models(kind=None):
    """Sorted names of every model :func:`build_model` can build (only those of ``kind`` if given)."""
    return sorted(name for name in _REGISTRY if kind is None or _KINDS[name] == kind)


def _check_name(name):
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown model name {name!r}.{hint} Known models: {', '.join(list_models())}.")


def model_kind(name):
    """``"detector"`` or ``"classifier"`` for the registered model ``name``."""
    _check_name(name)
    return _KINDS[name]


def get_factory(name):
    """The factory registered under ``name`` (its signature lists the model's settings)."""
    _check_name(name)
    return _REGISTRY[name]


def build_model(name, **kwargs):
    """Builds the registered model ``name``; keyword arguments go to its factory.

    Raises:
        ValueError: ``name`` is not registered (the message lists close matches
            and every known name).
    """
    return get_factory(name)(**kwargs)


def check_kind(name, kind, purpose):
    """Raises a ``ValueError`` naming the model's kind unless ``name`` is a ``kind`` model.

    ``purpose`` completes "... cannot be used for <purpose>", e.g. ``"keras-pyramids train"``.
    """
    actual = model_kind(name)
    if actual != kind:
        others = ", ".join(list_models(kind))
        raise ValueError(
            f"{name} is a {actual}, not a {kind}: it cannot be used for {purpose}. {kind.capitalize()}s: {others}."
        )


def factory_defaults(name):
    """Default values of the keyword arguments of model ``name``'s factory, e.g.
    ``{"num_classes": 90, "image_size": 300, ...}`` (arguments without a default are left out).

    Raises:
        ValueError: ``name`` is not registered.
    """
    parameters = inspect.signature(get_factory(name)).parameters.values()
    return {p.name: p.default for p in parameters
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
