"""Image sizes as users give them: an int (square) or ``(height, width)``."""

import numpy as np


def to_hw(size, name="image_size"):
    """``size`` as a ``(height, width)`` tuple of positive ints.

    Raises:
        ValueError: naming ``name``, when ``size`` is neither a positive int nor
            a pair of positive ints (floats and booleans are refused rather
            than silently truncated).
    """

    def is_int(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    pair = (size, size) if is_int(size) else size
    try:
        height, width = pair
    except (TypeError, ValueError):
        height = width = None
    if not (is_int(height) and is_int(width) and height > 0 and width > 0):
        raise ValueError(f"{name} must be an int or (height, width) of positive ints; got {size!r}.")
    return int(height), int(width)
