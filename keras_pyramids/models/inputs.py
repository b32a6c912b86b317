"""Checks of the pixel values given to a detector at inference.

Detectors take RGB in 0..255 (the backbones scale it themselves). Two mistakes
give confident nonsense rather than an error: images already scaled to 0..1
(or -1..1), and NaN / infinite pixels (every score becomes NaN and NMS keeps
arbitrary boxes). :func:`check_pixel_values` refuses non-finite pixels with a
``ValueError`` naming the image and warns once per model when a float batch
lies within -1..1. It only looks at concrete arrays (numpy, eager tensors),
never at symbolic tensors inside a traced training or serving function, and
costs one pass over the batch; :func:`set_pixel_checks` turns it off.
"""

import warnings

import numpy as np

_ENABLED = [True]
_WARNED = set()


class PixelRangeWarning(UserWarning):
    """Images look scaled to 0..1 or -1..1 while the detector expects 0..255."""


def set_pixel_checks(enabled):
    """Turns :func:`check_pixel_values` on or off (for speed); returns the previous setting."""
    previous = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    return previous


def _concrete(images):
    """``images`` as a numpy array if it holds values now, else ``None``."""
    if isinstance(images, np.ndarray):
        return images
    if hasattr(images, "numpy") and hasattr(images, "dtype") and hasattr(images, "shape"):
        try:  # eager tensors; symbolic ones raise
            return np.asarray(images.numpy())
        except (AttributeError, NotImplementedError, ValueError, TypeError, RuntimeError):
            return None
    return None


def check_pixel_values(images, model_name="the detector"):
    """Refuses NaN / infinite pixels and warns (once per model) about images in 0..1 or -1..1.

    Args:
        images: a batch ``[B, H, W, 3]``; symbolic tensors and other inputs
            (e.g. a ``tf.data.Dataset``) are not checked.
        model_name: named in the messages.

    Raises:
        ValueError: naming the first image of the batch with non-finite values and their count.
    """
    if not _ENABLED[0]:
        return
    array = _concrete(images)
    if array is None or array.size == 0 or array.dtype.kind not in "fc":
        return  # integer images cannot be NaN and uint8 is 0..255 by type
    finite = np.isfinite(array)
    if not finite.all():
        per_image = (~finite).reshape(array.shape[0], -1).sum(axis=1) if array.ndim > 1 else [(~finite).sum()]
        first = int(np.flatnonzero(np.asarray(per_image))[0])
        raise ValueError(
            f"{model_name}: image {first} of the batch has {int(per_image[first])} NaN or infinite pixel "
            f"value(s) ({int((~finite).sum())} in the batch); images must be finite RGB values in 0..255 "
            "(keras_pyramids.models.inputs.set_pixel_checks(False) turns this check off).")
    low, high = float(array.min()), float(array.max())
    if -1.0 <= low and high <= 1.0 and high > low and model_name not in _WARNED:
        _WARNED.add(model_name)
        warnings.warn(
            f"{model_name} got images with values in [{low:.3g}, {high:.3g}]; it expects RGB in 0..255 "
            "(it scales them itself). Pass the unscaled pixels, e.g. images * 255 for images in 0..1.",
            PixelRangeWarning, stacklevel=4)
