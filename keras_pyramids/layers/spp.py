"""Spatial pyramid pooling (He et al. 2014, "Spatial Pyramid Pooling in Deep
Convolutional Networks for Visual Recognition", arXiv:1406.4729).

Two layers:

* :class:`SpatialPyramidPooling` (paper section 2.3, Fig. 3): max pooling over
  ``n x n`` bins for every pyramid level ``n``, concatenated into one vector of
  fixed length ``C * sum(n ** 2)`` whatever the height and width of the map.
* :class:`SpatialPyramidRoIPooling` (paper section 4 / appendix "Mapping a
  Window to Feature Maps"): the same pyramid over each box of one shared
  feature map, so the convolutional layers run once per image instead of once
  per region (the SPP-net detection speed-up).

Bin rule
--------
The window/stride rule of paper section 2.3 (window ``ceil(a/n)``, stride
``floor(a/n)``) does not always give ``n`` bins: for ``a = 10, n = 6`` it gives
window 2, stride 1 and therefore 9 windows; for ``a < n`` it gives stride 0.
Both layers use the rule of the paper's appendix instead, which always gives
exactly ``n`` non-empty bins on an axis of length ``a >= 1``. With 0-based bin
index ``i`` in ``0 .. n-1``, bin ``i`` covers the half-open range::

    [ floor(i * a / n), ceil((i + 1) * a / n) )

It is non-empty because ``ceil((i+1)a/n) >= (i+1)a/n > ia/n >= floor(ia/n)``,
and the bins together cover ``0 .. a-1``. When ``a < n`` (a map smaller than
the level) neighbouring bins overlap and repeat cells; when ``n`` divides
``a`` the bins tile the axis exactly. A 2-D bin is the product of one row bin
and one column bin.

Output layout
-------------
For each level (in the order given by ``levels``) the ``[n, n, C]`` block of
bin maxima is flattened row-major (bin row, bin column, channel); the levels
are then concatenated. So for levels ``(6, 3, 2, 1)`` the first ``36 * C``
values are the 6x6 level and the last ``C`` values are the global max.

Implementation note: bins of one level may overlap, so this is not a
``segment_max``; each level is computed separably (columns, then rows) as a
max over ``where(in_bin, x, -inf)``. Bins are never empty, so ``-inf`` never
reaches the output. Only ``keras.ops`` is used, so the layers run on every
Keras 3 backend and under ``tf.function`` with unknown height and width.
"""

import keras
from keras import ops

_SERIALIZATION_PACKAGE = "keras_pyramids"


def _validate_levels(levels, layer_name):
    try:
        levels = tuple(levels)
    except TypeError:
        raise ValueError(
            f"{layer_name}: `levels` must be a non-empty sequence of positive ints "
            f"(e.g. (6, 3, 2, 1)); got {levels!r}."
        ) from None
    if not levels:
        raise ValueError(
            f"{layer_name}: `levels` is empty; give at least one pyramid level, "
            "e.g. levels=(6, 3, 2, 1)."
        )
    for n in levels:
        # bool is an int subclass but levels=(True,) is certainly a mistake.
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"{layer_name}: every pyramid level must be a positive int (bins per "
                f"side); got {n!r} in levels={levels!r}."
            )
    return levels


def pyramid_length(levels, channels):
    """Length ``channels * sum(n ** 2)`` of the pooled vector (12800 for ZF-5's 256 x 50)."""
    return channels * sum(n * n for n in levels)


def bin_bounds(start, length, n):
    """Start (inclusive) and end (exclusive) of the ``n`` bins on an axis.

    Bins cover ``[start, start + length)`` with the appendix rule (module
    docstring). ``start`` and ``length`` are integer tensors of shape ``[N]``
    (``length >= 1``); returns two int32 tensors of shape ``[N, n]``.
    """
    i = ops.arange(n, dtype="int32")[None, :]
    length = length[:, None]
    lo = ops.floor_divide(i * length, n)
    # ceil(p / n) for p >= 0 written with floor division to stay in integers.
    hi = ops.floor_divide((i + 1) * length + (n - 1), n)
    return start[:, None] + lo, start[:, None] + hi


def _bin_mask(size, lo, hi):
    """Boolean ``[N, n, size]``: cell ``k`` lies in bin ``[lo, hi)``."""
    k = ops.arange(size, dtype="int32")[None, None, :]
    return ops.logical_and(k >= lo[:, :, None], k < hi[:, :, None])


def _masked_max(x, mask, axis):
    neg_inf = ops.cast(float("-inf"), x.dtype)
    return ops.max(ops.where(mask, x, neg_inf), axis=axis)


def pool_bins(x, row_lo, row_hi, col_lo, col_hi):
    """Max of ``x`` over every (row bin, column bin) pair.

    Args:
        x: ``[N, H, W, C]``.
        row_lo, row_hi: int32 ``[N or 1, n]`` row bin bounds (end exclusive).
        col_lo, col_hi: int32 ``[N or 1, n]`` column bin bounds.

    Returns:
        ``[N, n, n, C]``; entry ``[b, i, j]`` is the max over rows
        ``row_lo[b, i] .. row_hi[b, i]-1`` and columns ``col_lo[b, j] .. col_hi[b, j]-1``.
    """
    shape = ops.shape(x)
    # Columns first: [N, H, 1, W, C] against a [N, 1, n, W, 1] mask -> [N, H, n, C].
    col_mask = _bin_mask(shape[2], col_lo, col_hi)
    cols = _masked_max(x[:, :, None, :, :], col_mask[:, None, :, :, None], axis=3)
    # Then rows: [N, 1, H, n, C] against a [N, n, H, 1, 1] mask -> [N, n, n, C].
    row_mask = _bin_mask(shape[1], row_lo, row_hi)
    return _masked_max(cols[:, None, :, :, :], row_mask[:, :, :, None, None], axis=2)


def _flatten_pyramid(blocks):
    """Concatenates ``[N, n, n, C]`` blocks into ``[N, C * sum(n^2)]`` (row-major per level)."""
    flat = []
    for block in blocks:
        s = ops.shape(block)
        flat.append(ops.reshape(block, (-1, s[1] * s[2] * s[3])))
    return ops.concatenate(flat, axis=-1) if len(flat) > 1 else flat[0]


def _check_feature_map(shape, layer_name):
    if len(shape) != 4:
        raise ValueError(
            f"{layer_name} expects a 4-D feature map [batch, height, width, channels] "
            f"(channels_last); got shape {tuple(shape)} of rank {len(shape)}."
        )
    for axis, label in ((1, "height"), (2, "width")):
        if shape[axis] is not None and shape[axis] < 1:
            raise ValueError(f"{layer_name}: the feature map has {label} 0; got shape {tuple(shape)}.")


@keras.saving.register_keras_serializable(package=_SERIALIZATION_PACKAGE)
class SpatialPyramidPooling(keras.layers.Layer):
    """Spatial pyramid max pooling to a fixed-length vector (SPP-net, paper section 2.3).

    For every level ``n`` in ``levels`` the ``H x W`` map is divided into
    ``n x n`` bins by the appendix rule (bin ``i`` of an axis of length ``a``
    spans ``[floor(i a / n), ceil((i + 1) a / n))``, see the module docstring),
    each bin is max-pooled per channel and the ``n * n * C`` values are
    flattened row-major; the levels are concatenated in the given order.
    Any ``H, W >= 1`` works, including non-square maps and maps smaller than
    ``n`` (bins then overlap but are never empty).

    Input shape: ``[B, H, W, C]`` (channels_last; ``H``, ``W`` may be unknown).
    Output shape: ``[B, C * sum(n ** 2 for n in levels)]``, e.g. ``[B, 50 C]``
    for ``levels=(6, 3, 2, 1)``.

    Args:
        levels: bins per side of each pyramid level, e.g. ``(6, 3, 2, 1)`` as in
            the paper's classification networks.
    """

    def __init__(self, levels=(6, 3, 2, 1), **kwargs):
        super().__init__(**kwargs)
        self.levels = _validate_levels(levels, type(self).__name__)

    def call(self, inputs):
        _check_feature_map(inputs.shape, type(self).__name__)
        shape = ops.shape(inputs)
        one = ops.ones((1,), dtype="int32")
        zero = ops.zeros((1,), dtype="int32")
        height = one * ops.cast(shape[1], "int32")
        width = one * ops.cast(shape[2], "int32")
        blocks = []
        for n in self.levels:
            row_lo, row_hi = bin_bounds(zero, height, n)
            col_lo, col_hi = bin_bounds(zero, width, n)
            blocks.append(pool_bins(inputs, row_lo, row_hi, col_lo, col_hi))
        return _flatten_pyramid(blocks)

    def compute_output_shape(self, input_shape):
        _check_feature_map(input_shape, type(self).__name__)
        channels = input_shape[-1]
        length = None if channels is None else pyramid_length(self.levels, channels)
        return (input_shape[0], length)

    def get_config(self):
        config = super().get_config()
        config["levels"] = list(self.levels)
        return config


@keras.saving.register_keras_serializable(package=_SERIALIZATION_PACKAGE)
class SpatialPyramidRoIPooling(keras.layers.Layer):
    """Spatial pyramid pooling of every box over one shared feature map (SPP-net detection).

    Paper section 4 runs the convolutional layers once on the whole image and
    pools a 4-level pyramid over each candidate window's projection onto the
    conv5 map; the appendix ("Mapping a Window to Feature Maps") gives the
    projection used here.

    Box format: ``[ymin, xmin, ymax, xmax]`` in input-image pixels (floats),
    shape ``[B, R, 4]``; box ``r`` of image ``b`` is pooled from feature map
    ``b``.

    Projection (appendix): feature cell ``k`` (0-based) has its receptive
    field centred at image coordinate ``stride * k + offset``. A window edge at
    image coordinate ``x`` maps to::

        first cell = floor((x_min - offset) / stride) + 1
        last cell  = ceil((x_max - offset) / stride) - 1      (inclusive)

    i.e. the cells whose centres lie strictly inside the window, clipped to
    the map. A window too small to contain a cell centre (first > last) uses
    the single cell whose centre is nearest to the window's centre, so every
    region, and therefore every bin, is non-empty. The ``first .. last``
    region (length ``a``) is then split into ``n`` bins per axis with the same
    appendix rule as :class:`SpatialPyramidPooling`. Height and width are
    handled separately, so non-square boxes and maps are pooled with ``n``
    bins along each axis.

    Input: ``(features [B, h, w, C], boxes [B, R, 4])`` as a list/tuple, or
    ``layer(features, boxes)``.
    Output: ``[B, R, C * sum(n ** 2)]``, each row laid out like
    :class:`SpatialPyramidPooling`'s output.

    Args:
        levels: bins per side of each pyramid level.
        stride: total stride ``S`` of the feature map relative to the image
            (16 for ZF-5 conv5, 32 for MobileNet v1 ``Conv2d_13_pointwise``).
        offset: image coordinate of the receptive-field centre of cell 0. The
            paper's formulas assume ``0`` (every layer padded by
            ``floor(p / 2)``); other paddings need "a proper offset".
    """

    def __init__(self, levels=(6, 3, 2, 1), stride=16, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.levels = _validate_levels(levels, type(self).__name__)
        if not isinstance(stride, (int, float)) or isinstance(stride, bool) or stride <= 0:
            raise ValueError(
                f"{type(self).__name__}: `stride` must be a positive number (feature "
                f"map stride in image pixels); got {stride!r}."
            )
        self.stride = stride
        self.offset = float(offset)

    def _split(self, inputs, boxes):
        if boxes is None:
            if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
                raise ValueError(
                    f"{type(self).__name__} expects (features, boxes): a feature map "
                    "[B, h, w, C] and boxes [B, R, 4]; got "
                    f"{type(inputs).__name__} of length "
                    f"{len(inputs) if isinstance(inputs, (list, tuple)) else 1}."
                )
            inputs, boxes = inputs
        return inputs, boxes

    def _check_shapes(self, features_shape, boxes_shape):
        name = type(self).__name__
        _check_feature_map(features_shape, name)
        if len(boxes_shape) != 3 or boxes_shape[-1] != 4:
            raise ValueError(
                f"{name}: boxes must have shape [batch, num_boxes, 4] holding "
                f"[ymin, xmin, ymax, xmax] in image pixels; got shape {tuple(boxes_shape)}."
            )
        fb, bb = features_shape[0], boxes_shape[0]
        if fb is not None and bb is not None and fb != bb:
            raise ValueError(
                f"{name}: features and boxes have different batch sizes ({fb} vs {bb})."
            )

    def _project(self, lo, hi, size):
        """Image-pixel edges ``[M]`` -> first cell ``[M]`` and region length ``[M]`` (>= 1)."""
        s = ops.cast(self.stride, lo.dtype)
        lo = (lo - self.offset) / s
        hi = (hi - self.offset) / s
        first = ops.floor(lo) + 1.0
        last = ops.ceil(hi) - 1.0
        nearest = ops.floor((lo + hi) / 2.0 + 0.5)
        empty = last < first
        first = ops.where(empty, nearest, first)
        last = ops.where(empty, nearest, last)
        top = ops.cast(size - 1, lo.dtype)
        first = ops.cast(ops.clip(first, 0.0, top), "int32")
        last = ops.cast(ops.clip(last, 0.0, top), "int32")
        return first, last - first + 1

    def call(self, inputs, boxes=None):
        features, boxes = self._split(inputs, boxes)
        self._check_shapes(features.shape, boxes.shape)
        shape = ops.shape(features)
        height, width = ops.cast(shape[1], "int32"), ops.cast(shape[2], "int32")
        num_boxes = ops.shape(boxes)[1]
        if boxes.shape[0] == 0 or boxes.shape[1] == 0 or features.shape[0] == 0:
            # Nothing to pool; handled up front because the TensorFlow
            # backend's ops.map probes element 0 to infer its output signature.
            length = shape[3] * sum(n * n for n in self.levels)
            return ops.zeros((shape[0], num_boxes, length), dtype=features.dtype)

        # The coordinate arithmetic must not run in float16 (pixel coordinates
        # above 2048 lose integer precision there).
        flat = ops.reshape(ops.cast(boxes, "float32"), (-1, 4))
        batch_index = ops.repeat(ops.arange(shape[0], dtype="int32"), num_boxes)
        top, rows = self._project(flat[:, 0], flat[:, 2], height)
        left, cols = self._project(flat[:, 1], flat[:, 3], width)
        bounds = []
        for n in self.levels:
            bounds.extend(bin_bounds(top, rows, n))
            bounds.extend(bin_bounds(left, cols, n))

        # One box at a time: pooling all boxes at once would materialise a
        # [B*R, h, n, w, C] mask product, gigabytes for ~2000 proposals.
        def pool_one(item):
            index, box_bounds = item
            fmap = ops.take(features, index[None], axis=0)
            blocks = [
                pool_bins(fmap, *[b[None] for b in box_bounds[4 * k : 4 * k + 4]])
                for k in range(len(self.levels))
            ]
            return _flatten_pyramid(blocks)[0]

        pooled = ops.map(pool_one, (batch_index, tuple(bounds)))
        return ops.reshape(pooled, (shape[0], num_boxes, ops.shape(pooled)[-1]))

    def compute_output_spec(self, inputs, boxes=None):
        features, boxes = self._split(inputs, boxes)
        self._check_shapes(features.shape, boxes.shape)
        channels = features.shape[-1]
        length = None if channels is None else pyramid_length(self.levels, channels)
        return keras.KerasTensor(
            (features.shape[0], boxes.shape[1], length), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(levels=list(self.levels), stride=self.stride, offset=self.offset)
        return config
