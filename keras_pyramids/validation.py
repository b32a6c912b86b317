"""Checks of user settings that fail with one message naming the setting and what it accepts.

Used by :class:`keras_pyramids.training.config.TrainConfig`, :func:`keras_pyramids.build_model`
and the command line, so every setting is refused the same way, before anything is built:
``"batch_size must be an int >= 1; got 2.5 (float)."``. Booleans are not numbers here
(``True`` is not a batch size) and NaN / infinity are not finite numbers.
"""

import difflib
import math
import numbers
import os


def _shown(value):
    """``value`` as it appears in an error message, with its type when that is the surprise."""
    text = repr(value)
    if isinstance(value, (str, bool, float)) or value is None:
        return f"{text} ({type(value).__name__})"
    return text


def is_int(value):
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """Whether ``value`` is a real number (int or float, Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _range_text(minimum, maximum, min_inclusive, max_inclusive):
    parts = []
    if minimum is not None:
        parts.append(f"{'>=' if min_inclusive else '>'} {minimum}")
    if maximum is not None:
        parts.append(f"{'<=' if max_inclusive else '<'} {maximum}")
    return " and ".join(parts)


def _in_range(value, minimum, maximum, min_inclusive, max_inclusive):
    if minimum is not None and (value < minimum if min_inclusive else value <= minimum):
        return False
    if maximum is not None and (value > maximum if max_inclusive else value >= maximum):
        return False
    return True


def check_int(name, value, minimum=None, maximum=None, allow_none=False):
    """Returns ``int(value)``; raises ``ValueError`` unless it is an int in ``[minimum, maximum]``."""
    if value is None and allow_none:
        return None
    if not is_int(value) or not _in_range(value, minimum, maximum, True, True):
        wanted = "an int" + (f" {_range_text(minimum, maximum, True, True)}" if
                             (minimum, maximum) != (None, None) else "")
        raise ValueError(f"{name} must be {wanted}{' or null' if allow_none else ''}; got {_shown(value)}.")
    return int(value)


def check_number(name, value, minimum=None, maximum=None, min_inclusive=True, max_inclusive=True,
                 allow_none=False):
    """Returns ``float(value)``; raises ``ValueError`` unless it is a finite number in the range."""
    if value is None and allow_none:
        return None
    if (not is_number(value) or not math.isfinite(float(value))
            or not _in_range(float(value), minimum, maximum, min_inclusive, max_inclusive)):
        wanted = "a finite number"
        limits = _range_text(minimum, maximum, min_inclusive, max_inclusive)
        if limits:
            wanted += f" {limits}"
        raise ValueError(f"{name} must be {wanted}{' or null' if allow_none else ''}; got {_shown(value)}.")
    return float(value)


def check_bool(name, value, allow_none=False):
    """Returns ``value``; raises ``ValueError`` unless it is ``True`` or ``False``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false{' or null' if allow_none else ''}; "
                         f"got {_shown(value)}.")
    return value


def check_str(name, value, allow_none=False, allow_empty=False):
    """Returns ``value``; raises ``ValueError`` unless it is a (non-empty) string."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or (not allow_empty and not value):
        wanted = "a string" if allow_empty else "a non-empty string"
        raise ValueError(f"{name} must be {wanted}{' or null' if allow_none else ''}; got {_shown(value)}.")
    return value


def check_like_default(name, value, default):
    """Raises ``ValueError`` unless ``value`` has the type of ``default`` (a bool for a bool,
    an int for an int, a number for a float, a string for a string, a list for a list or
    tuple) and holds no NaN / infinity; ``None`` defaults accept anything finite."""
    if value is None and default is None:
        return
    if isinstance(default, bool):
        check_bool(name, value)
    elif is_int(default):
        check_int(name, value)
    elif isinstance(default, float):
        check_number(name, value)
    elif isinstance(default, str):
        check_str(name, value, allow_empty=True)
    elif isinstance(default, (tuple, list)) and not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be a list like its default {list(default)}; got {value!r}.")
    check_finite_numbers(name, value)


def did_you_mean(word, choices):
    """``" Did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=2, cutoff=0.6)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


def check_choice(name, value, choices):
    """Returns ``value``; raises ``ValueError`` (with "did you mean") unless it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Unknown {name} {value!r}.{did_you_mean(value, choices)} "
                         f"Choose one of: {', '.join(map(str, choices))}.")
    return value


def check_keys(what, keys, known):
    """Raises ``ValueError`` naming each unknown key of ``keys`` (with "did you mean") and the known ones."""
    unknown = [k for k in keys if k not in known]
    if unknown:
        hints = "".join(did_you_mean(k, known) for k in unknown)
        raise ValueError(f"Unknown {what}: {', '.join(map(repr, unknown))}.{hints} "
                         f"Known: {', '.join(sorted(known))}.")


def check_finite_numbers(name, value):
    """Raises ``ValueError`` if ``value`` or a number nested in its lists / dicts is NaN or infinite."""
    if is_number(value) and not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite_numbers(f"{name}[{key!r}]", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite_numbers(f"{name}[{index}]", item)


def check_new_paths(paths):
    """Raises ``FileExistsError`` naming the first of ``paths`` that exists (nothing is replaced),
    or ``FileNotFoundError`` naming a missing parent folder."""
    for path in paths:
        if os.path.lexists(path):
            raise FileExistsError(f"{path} already exists; not replacing it: choose a new path.")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"The folder {parent} of {path} does not exist.")
