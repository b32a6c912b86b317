"""The model registry: one name per ready-made model.

Names follow ``<family>_<backbone>[_<size>]`` (DESIGN.md). Factories register
themselves with :func:`register_model`; users call :func:`build_model`.
"""

import difflib

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


def build_model(name, **kwargs):
    """Builds the registered model ``name``; keyword arguments go to its factory.

    Raises:
        ValueError: ``name`` is not registered (the message lists close matches
            and every known name).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} "
            f"Known models: {', '.join(list_models())}."
        )
    return _REGISTRY[name](**kwargs)
