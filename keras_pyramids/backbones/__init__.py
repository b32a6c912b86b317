"""Backbones: Keras models mapping images to feature maps keyed by pyramid level.

The contract every backbone of the zoo keeps, so that necks and heads never
branch on a backbone's name:

- input: float RGB images ``[B, H, W, 3]`` in ``[0, 255]`` (each backbone does
  its own preprocessing, so it is part of the saved model);
- output: a dict ``{"C<k>": [B, H / 2^k, W / 2^k, C_k]}`` (rounded up where
  SAME padding meets odd sizes): the key's number is the level, the map's stride
  is ``2^k`` (``C3`` = stride 8, ``C5`` = stride 32, as in the FPN paper and
  the Model Garden); ``outputs=(...)`` chooses the keys, and layers past the
  deepest requested key are not built;
- a stage that keeps its input's stride (DetNet-style dilation, IPG-Net's
  "keep" stages) adds a letter: ResNet's dilated ``conv5_x`` at stride 16 is
  ``"C4b"``, a second one ``"C4c"``; the stride is still read off the number.

:func:`level_of_key` reads the level off a key, :func:`level_stride` the stride,
:func:`level_keys` names a sequence of stage strides.
"""

import re

_LEVEL_KEY = re.compile(r"^C(\d+)([b-z]?)$")


def level_of_key(key):
    """Level of the backbone map ``key`` (``"C4"`` and ``"C4b"`` -> 4)."""
    match = _LEVEL_KEY.match(str(key))
    if not match:
        raise ValueError(f"Unknown level key {key!r}: backbone maps are keyed 'C<k>' (stride 2^k), e.g. 'C4'.")
    return int(match.group(1))


def level_stride(key):
    """Stride of the backbone map ``key`` (``"C4"`` -> 16)."""
    return 2 ** level_of_key(key)


def level_keys(strides):
    """Keys of maps at cumulative ``strides`` (powers of two, non-decreasing), e.g.
    ``(4, 8, 16, 16)`` -> ``("C2", "C3", "C4", "C4b")``."""
    keys, seen = [], {}
    for stride in strides:
        level = int(stride).bit_length() - 1
        if stride < 1 or 2**level != stride:
            raise ValueError(f"Backbone strides must be powers of two; got {stride}.")
        suffix = seen.get(level, 0)
        keys.append(f"C{level}" + ("" if suffix == 0 else "bcdefghijklmnopqrstuvwxyz"[suffix - 1]))
        seen[level] = suffix + 1
    return tuple(keys)
