"""The model registry: one name per ready-made model.

Names follow ``<family>_<backbone>[_<size>]`` (DESIGN.md). Factories register
themselves with :func:`register_model`; users call :func:`build_model`.
"""

import difflib
import inspect

_REGISTRY = {}


def register_model(name):
    """Decorator registering ``factory(**kwargs) -> keras.Model`` under ``name``."""

    def wrap(factory):
        if name in _REGISTRY:
            raise ValueError(f"Model name {name!r} is registered twice.")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models():
    """Sorted names of every model :func:`build_model` can build."""
    return sorted(_REGISTRY)


def _factory(name):
    """The factory registered as ``name``; ``ValueError`` listing close matches otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} "
            f"Known models: {', '.join(list_models())}."
        )
    return _REGISTRY[name]


def build_model(name, **kwargs):
    """Builds the registered model ``name``; keyword arguments go to its factory.

    Raises:
        ValueError: ``name`` is not registered (the message lists close matches
            and every known name).
    """
    return _factory(name)(**kwargs)


def factory_defaults(name):
    """Default values of the keyword arguments of model ``name``'s factory, e.g.
    ``{"num_classes": 90, "image_size": 300, ...}`` (arguments without a default are left out).

    Raises:
        ValueError: ``name`` is not registered.
    """
    parameters = inspect.signature(_factory(name)).parameters.values()
    return {p.name: p.default for p in parameters
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
