"""The model registry: one name per ready-made model, and what kind of model it is.

Names follow ``<family>_<backbone>[_<neck>|_<size>]``. Factories register
themselves with :func:`register_model`; users call :func:`build_model`. The
registry knows each model's kind (:data:`KINDS`), so a tool that needs a
detector can refuse a classifier by name before building anything, and
:func:`build_model` checks the keyword arguments against the factory's
signature before building anything (:func:`check_model_kwargs`).
"""

import ast
import inspect
import textwrap

from keras_pyramids import validation as check
from keras_pyramids.image_size import to_hw

KINDS = ("detector", "classifier")

_REGISTRY = {}
_KINDS = {}

# Value rules of arguments many factories share (name -> check), applied when
# the factory takes the argument; other arguments are checked against the type
# of their default value.
_POSITIVE_INTS = ("num_classes", "min_depth", "num_levels", "num_scales", "num_tums", "tum_channels",
                  "predictor_depth")
_POSITIVE_NUMBERS = ("depth_multiplier", "backbone_width")


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


def check_model_name(name):
    """Raises ``ValueError`` (with close matches and every known name) unless ``name`` is registered."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"Unknown model name {name!r}.{check.did_you_mean(name, _REGISTRY)} "
                         f"Known models: {', '.join(list_models())}.")


def model_kind(name):
    """``"detector"`` or ``"classifier"`` for the registered model ``name``."""
    check_model_name(name)
    return _KINDS[name]


def get_factory(name):
    """The factory registered under ``name`` (its signature lists the model's settings)."""
    check_model_name(name)
    return _REGISTRY[name]


def _forward_call(function, var_keyword):
    """Where ``function`` passes its ``**var_keyword``: ``(callee, n_positional, keyword_names)``,
    ``"super"`` for ``super().__init__(**kwargs)``, or ``None`` when that cannot be read off its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and any(
        k.arg is None and isinstance(k.value, ast.Name) and k.value.id == var_keyword for k in node.keywords)]
    if len(calls) != 1 or any(isinstance(a, ast.Starred) for a in calls[0].args):
        return None
    call = calls[0]
    target = call.func
    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Call)
            and isinstance(target.value.func, ast.Name) and target.value.func.id == "super"):
        return "super"
    names = []
    while isinstance(target, ast.Attribute):
        names.insert(0, target.attr)
        target = target.value
    if not isinstance(target, ast.Name) or target.id not in function.__globals__:
        return None
    callee = function.__globals__[target.id]
    for attribute in names:
        callee = getattr(callee, attribute, None)
    if not callable(callee):
        return None
    return callee, len(call.args), {k.arg for k in call.keywords if k.arg}


def _accepted_parameters(function, bound_positional=0, bound_names=(), depth=0):
    """``{name: inspect.Parameter}`` a caller may pass to ``function`` by keyword, following
    ``**kwargs`` into the one function they are forwarded to; ``None`` if that is unknown."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    accepted, var_keyword, positional = {}, None, 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_KEYWORD:
            var_keyword = parameter.name
        elif parameter.kind is parameter.VAR_POSITIONAL:
            continue
        elif parameter.kind is not parameter.KEYWORD_ONLY and positional < bound_positional:
            positional += 1
        elif parameter.name not in bound_names and parameter.kind is not parameter.POSITIONAL_ONLY:
            accepted[parameter.name] = parameter
    if var_keyword is None:
        return accepted
    source = function.__init__ if inspect.isclass(function) else function
    forward = _forward_call(source, var_keyword) if depth < 5 else None
    if forward is None:
        return None
    if forward == "super":  # the base class (a Keras layer) checks its own arguments
        return accepted
    more = _accepted_parameters(*forward, depth=depth + 1)
    return None if more is None else dict(more, **accepted)


def model_parameters(name):
    """``{argument: default}`` of everything ``build_model(name, ...)`` accepts, or ``None``
    when the factory forwards ``**kwargs`` somewhere that cannot be inspected."""
    parameters = _accepted_parameters(get_factory(name))
    return None if parameters is None else {n: p.default for n, p in parameters.items()}


def _check_value(key, value, default, where):
    label = f"{where}{key}"
    if key in _POSITIVE_INTS:
        check.check_int(label, value, minimum=1)
    elif key == "image_size":
        to_hw(value, name=label)
    elif key in _POSITIVE_NUMBERS:
        check.check_number(label, value, minimum=0, min_inclusive=False)
    else:
        check.check_like_default(label, value, default)
    check.check_finite_numbers(label, value)


def check_model_kwargs(name, kwargs, what=None):
    """Raises ``ValueError`` unless ``build_model(name, **kwargs)`` gets arguments its factory takes,
    of the right type and range (``num_classes`` an int >= 1, ``depth_multiplier`` > 0, ...).

    Args:
        name: registered model name.
        kwargs: the keyword arguments.
        what: how the caller calls ``kwargs`` in messages (e.g. ``"model_kwargs"``).
    """
    check_model_name(name)
    parameters = model_parameters(name)
    where = f"{what}." if what else ""
    if parameters is not None:
        check.check_keys(f"{what} key for {name}" if what else f"argument of {name}", list(kwargs),
                         list(parameters))
    for key, value in kwargs.items():
        default = parameters.get(key, inspect.Parameter.empty) if parameters else inspect.Parameter.empty
        _check_value(key, value, None if default is inspect.Parameter.empty else default, where)


def build_model(name, /, **kwargs):
    """Builds the registered model ``name``; keyword arguments go to its factory.

    Raises:
        ValueError: ``name`` is not registered (the message lists close matches
            and every known name), or an argument the factory does not take
            (with the closest one) or of the wrong type or range.
    """
    check_model_kwargs(name, kwargs)
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
