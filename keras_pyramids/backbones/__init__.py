"""Backbones: Keras models mapping images to feature maps keyed by pyramid level.

The contract every backbone of the zoo keeps, so that necks and heads never
branch on a backbone's name:

- input: float RGB images ``[B, H, W, 3]`` in ``[0, 255]`` (each backbone does
  its own preprocessing, so it is part of the saved model);
- output: a dict ``{"C<k>": [B, H / 2^k, W / 2^k, C_k]}`` (rounded up where
  SAME padding meets odd sizes): the key's number is the level, the map's stride
  is ``2^k`` (``C3`` = stride 8, ``C5`` = stride 32, as in the FPN paper and
  the Model Garden); ``outputs=(...)`` chooses the keys, and layers past the
  deepest requested key are not built.

:func:`level_of_key` reads the level off a key, :func:`level_stride` the stride.
"""

import re

_LEVEL_KEY = re.compile(r"^C(\d+)$")


def level_of_key(key):
    """Level of the backbone map ``key`` (``"C4"`` -> 4)."""
    match = _LEVEL_KEY.match(str(key))
    if not match:
        raise ValueError(f"Unknown level key {key!r}: backbone maps are keyed 'C<k>' (stride 2^k), e.g. 'C4'.")
    return int(match.group(1))


def level_stride(key):
    """Stride of the backbone map ``key`` (``"C4"`` -> 16)."""
    return 2 ** level_of_key(key)
