"""Scale decomposition (POD section 3.2, Figures 3 and 5): a learnt fractional scale -> integral sub-convolutions.

A 3x3 convolution at scale ``(d_h, d_w)`` becomes at most two ordinary
convolutions with integral dilations whose outputs are concatenated:

- each direction's scale lies between ``floor(d)`` and ``ceil(d)``; a
  direction within ``tolerance`` (0.05, the paper's ``Delta <= 0.05``) of an
  integer is not decomposed and keeps that integer;
- split factor ``alpha`` = the mean fractional part of the decomposed
  directions: ``(frac(d_h) + frac(d_w)) / 2`` when both are, just the one
  fraction when only one is (the paper's (2.02, 1.7) example gives 0.7);
- the lower-bound sub-convolution takes the first ``(1 - alpha)`` of the
  output channels, the upper-bound one the rest;
- a dilation of 0 (a scale below 1, or within the tolerance of 0) is kernel
  size 1 in that direction (1x3, 3x1 or 1x1 sub-convolutions);
- an integral pair gives one convolution.

Open choice: ``(1 - alpha) * C`` is rounded half up to whole channels; when
that leaves a sub-convolution with no channel, only the other one is kept.
"""

import dataclasses
import math

TOLERANCE = 0.05
# Float slack of the tolerance test: 1.95 is 0.05000000000000004 from 2.
_SLACK = 1e-9


@dataclasses.dataclass(frozen=True)
class SubConv:
    """One sub-convolution of a decomposed 3x3 convolution.

    Attributes:
        filters: its output channels (a contiguous block; sub-convolutions are
            listed in output-channel order, lower bound first).
        kernel_size: ``(kh, kw)``, 3 or 1 (1 where the dilation would be 0).
        dilation_rate: ``(dh, dw)``, integral, >= 1 (1 where the kernel size is 1).
        bound: ``"lower"``, ``"upper"`` or ``"integral"`` (the pair was not decomposed).
    """

    filters: int
    kernel_size: tuple
    dilation_rate: tuple
    bound: str

    def to_config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "dilation_rate": list(self.dilation_rate), "bound": self.bound}


def _check_scale(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0; got {value!r}.")
    return float(value)


def _bounds(scale, tolerance):
    """``(lower, upper, fraction)`` of one direction; ``fraction`` is None when it is not decomposed."""
    nearest = math.floor(scale + 0.5)
    if abs(scale - nearest) <= tolerance + _SLACK:
        return nearest, nearest, None
    lower = math.floor(scale)
    return lower, lower + 1, scale - lower


def split_factor(d_h, d_w, tolerance=TOLERANCE):
    """The split factor ``alpha`` of section 3.2 (0 when neither direction is decomposed)."""
    fractions = [f for f in (_bounds(_check_scale(d, name), tolerance)[2] for d, name in ((d_h, "d_h"), (d_w, "d_w")))
                 if f is not None]
    return sum(fractions) / len(fractions) if fractions else 0.0


def _sub_conv(filters, dilations, bound):
    kernel = tuple(3 if d > 0 else 1 for d in dilations)
    return SubConv(filters, kernel, tuple(max(int(d), 1) for d in dilations), bound)


def decompose_scale(d_h, d_w, out_channels, tolerance=TOLERANCE):
    """The sub-convolutions replacing a 3x3 convolution at learnt scale ``(d_h, d_w)``.

    Args:
        d_h, d_w: the learnt scales (numbers >= 0).
        out_channels: the convolution's output channels.
        tolerance: a direction this close to an integer is not decomposed.

    Returns:
        A list of one or two :class:`SubConv`, in output-channel order, whose
        ``filters`` sum to ``out_channels``.

    Example (the paper's Fig. 3): ``decompose_scale(1.7, 2.9, 10)`` gives
    ``alpha = 0.8``: 2 channels at dilation (1, 2) and 8 at (2, 3).
    """
    d_h, d_w = _check_scale(d_h, "d_h"), _check_scale(d_w, "d_w")
    if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive int; got {out_channels!r}.")
    (low_h, high_h, _), (low_w, high_w, _) = _bounds(d_h, tolerance), _bounds(d_w, tolerance)
    if (low_h, low_w) == (high_h, high_w):
        return [_sub_conv(out_channels, (low_h, low_w), "integral")]
    alpha = split_factor(d_h, d_w, tolerance)
    lower_channels = math.floor((1.0 - alpha) * out_channels + 0.5)
    parts = [(lower_channels, (low_h, low_w), "lower"), (out_channels - lower_channels, (high_h, high_w), "upper")]
    return [_sub_conv(n, dilations, bound) for n, dilations, bound in parts if n > 0]
