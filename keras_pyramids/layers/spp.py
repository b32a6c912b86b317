"""Spatial pyramid pooling (He et al. 2014, "Spatial Pyramid Pooling in Deep
Convolutional Networks for Visual Recognition", arXiv:1406.4729).

Two layers:

* :class:`SpatialPyramidPooling` (paper section 2.3, Fig. 3): max pooling over
  ``n x n`` bins for every pyramid level ``n``, concatenated into one vector of
  fixed length ``C * sum(n ** 2)`` whatever the height and width of the map.
* :class:`SpatialPyramidRoIPooling` (paper section 4 / appendix "Mapping a
  Window to Feature Maps"): the same pyramid over each box of one shared
  feature map, so the convolutional layers run once per image instead of once
  per region (the SPP-net detection speed-up); with several image scales, each
  box is pooled at the scale where it is closest to 224 x 224 pixels
  (section 4.1, :func:`select_scales`). It is the RoI pooler of the SPP-net
  detectors (:mod:`keras_pyramids.models.sppnet_detector`).

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
``segment_max``. :class:`SpatialPyramidPooling` computes each level
separably (columns, then rows) as a max over ``where(in_bin, x, -inf)``; bins
are never empty, so ``-inf`` never reaches the output.
:class:`SpatialPyramidRoIPooling` reads every bin of every box with one gather
from a table of power-of-two window maxima (static shapes, XLA), and falls
back to the masked max one box at a time for maps of unknown size. Only
``keras.ops`` is used, so the layers run on every Keras 3 backend and under
``tf.function`` with unknown height and width.
"""

import numbers

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


# SPP-net section 4.1: a window is pooled at the scale where it covers closest to 224 x 224 pixels.
TARGET_REGION_SIZE = 224


def _validate_image_sizes(image_sizes, layer_name):
    try:
        sizes = tuple(tuple(size) for size in image_sizes)
    except TypeError:
        sizes = ()
    if not sizes or any(len(size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in size) for size in sizes):
        raise ValueError(
            f"{layer_name}: `image_sizes` must be a non-empty list of (height, width) pairs of positive ints "
            f"(one per feature map); got {image_sizes!r}."
        )
    return tuple((int(h), int(w)) for h, w in sizes)


def select_scales(boxes, image_sizes, target_size=TARGET_REGION_SIZE):
    """Index of the image scale at which each box covers closest to ``target_size ** 2`` pixels.

    SPP-net section 4.1 ("Multi-scale feature extraction"): the image is
    resized to several scales and "we choose a single scale s such that the
    scaled candidate window has a number of pixels closest to 224 x 224"; the
    window's features are pooled from that scale's conv5 map only. "Closest"
    is the absolute difference of pixel counts ``|h_k w_k - target^2|``; on a
    tie the earlier scale in ``image_sizes`` wins. Flipped sides count as 0.

    Args:
        boxes: ``[..., 4]`` normalised ``[ymin, xmin, ymax, xmax]`` (the same
            box at every scale, since the scales resize the whole image).
        image_sizes: ``(H_k, W_k)`` of each scale in pixels.
        target_size: the side of the target square (224, the pre-training size).

    Returns:
        int32 ``[...]`` scale indices.
    """
    boxes = ops.cast(boxes, "float32")
    area = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    target = float(target_size) ** 2
    best = ops.zeros(ops.shape(area), dtype="int32")
    best_gap = ops.abs(area * float(image_sizes[0][0] * image_sizes[0][1]) - target)
    # A static loop over the (few) scales, not over boxes; strict < keeps the earlier scale on ties.
    for k, (height, width) in enumerate(image_sizes[1:], start=1):
        gap = ops.abs(area * float(height * width) - target)
        best = ops.where(gap < best_gap, k, best)
        best_gap = ops.minimum(gap, best_gap)
    return best


def _direct_levels(levels):
    """Levels pooled from the map; each other level ``n`` divides the finest one and is a max over its bins."""
    finest = max(levels)
    return tuple(sorted({finest} | {n for n in levels if finest % n}))


def _table_depth(size, levels):
    """Largest ``k`` with ``2^k`` <= the longest bin a level of ``levels`` can have on an axis of ``size`` cells.

    A region of ``a <= size`` cells has bins ``ceil((i+1) a/n) - floor(i a/n) <= ceil(a/n) + 1`` long.
    """
    longest = max(min(size, -(-size // n) + 1) for n in levels)
    return longest.bit_length() - 1


def _doublings(x, depth, axis):
    """``[x_0 .. x_depth]`` with ``x_k[.., y, ..] = max(x[.., y : y + 2^k, ..])`` along ``axis`` (1 or 2).

    Entries whose window would pass the end hold leftovers; no query reads them,
    because a window of ``2^k`` cells starts at most ``2^k`` cells before the end.
    """
    size = x.shape[axis]
    out = [x]
    for k in range(1, depth + 1):
        shift, prev = 2 ** (k - 1), out[-1]
        if axis == 1:
            shifted = ops.concatenate([prev[:, shift:], prev[:, size - shift:]], axis=1)
        else:
            shifted = ops.concatenate([prev[:, :, shift:], prev[:, :, size - shift:]], axis=2)
        out.append(ops.maximum(prev, shifted))
    return out


def _floor_log2(length, depth):
    """``floor(log2(length))`` of int32 ``length >= 1``, capped at ``depth``, by comparisons (exact in integers)."""
    k = ops.zeros_like(length)
    for j in range(1, depth + 1):
        k = k + ops.cast(length >= 2 ** j, "int32")
    return k


def _region_max(x, axis):
    # ``initial`` lets a batch without boxes (0 regions) reduce in eager mode too; every bin is non-empty.
    return ops.max(x, axis=axis, initial=float("-inf"))


def _pool_pyramid_by_gather(maps, batch_index, map_index, tops, rows, lefts, cols, levels):
    """The pyramid of every region by range-maximum look-ups (static shapes; see the layer docstring).

    Args:
        maps: list of ``[B, H_m, W_m, C]`` maps with static ``H_m, W_m``.
        batch_index, map_index: int32 ``[N]`` image and map of each region.
        tops, rows, lefts, cols: int32 ``[N]`` first cell and length (>= 1) of each region.

    Returns:
        ``[N, C * sum(n^2)]`` laid out as :class:`SpatialPyramidPooling`'s output.
    """
    direct = _direct_levels(levels)
    channels = maps[0].shape[-1]
    batch = ops.shape(maps[0])[0]
    tables, bases, widths, cells, table_widths, depths = [], [], [], [], [], []
    base = 0
    for fmap in maps:
        height, width = int(fmap.shape[1]), int(fmap.shape[2])
        depth_h, depth_w = _table_depth(height, direct), _table_depth(width, direct)
        # [B, (depth_h + 1) (depth_w + 1) H W, C]: entry (kh, kw, y, x) = max of fmap[y : y + 2^kh, x : x + 2^kw].
        table = ops.stack([t for r in _doublings(fmap, depth_h, 1) for t in _doublings(r, depth_w, 2)], axis=1)
        size = (depth_h + 1) * (depth_w + 1) * height * width
        tables.append(ops.reshape(table, (batch, size, channels)))
        bases.append(base)
        widths.append(width)
        cells.append(height * width)
        table_widths.append(depth_w + 1)
        depths.append((depth_h, depth_w))
        base += size
    table = ops.reshape(ops.concatenate(tables, axis=1) if len(tables) > 1 else tables[0], (-1, channels))

    def per_region(values):
        return ops.take(ops.convert_to_tensor(values, "int32"), map_index)

    # Flat index of cell (y, x) of table (kh, kw) of a region's map and image.
    start = batch_index * base + per_region(bases)
    width, area, table_width = per_region(widths), per_region(cells), per_region(table_widths)
    depth_h = max(d[0] for d in depths)
    depth_w = max(d[1] for d in depths)
    powers = ops.convert_to_tensor([2 ** k for k in range(max(depth_h, depth_w) + 1)], "int32")

    def windows(lo, hi, depth):
        """Level ``k`` and the two starts of the ``2^k`` windows covering each bin ``[lo, hi)``."""
        k = _floor_log2(hi - lo, depth)
        return k, ops.stack([lo, hi - ops.take(powers, k)], axis=-1)  # [N, n], [N, n, 2]

    blocks = {}
    for n in direct:
        row_k, row_starts = windows(*bin_bounds(tops, rows, n), depth_h)
        col_k, col_starts = windows(*bin_bounds(lefts, cols, n), depth_w)
        # [N, n rows, n cols, 2, 2]: the four windows whose union is each bin.
        index = (start[:, None, None, None, None]
                 + ((row_k * table_width[:, None])[:, :, None, None, None] + col_k[:, None, :, None, None])
                 * area[:, None, None, None, None]
                 + row_starts[:, :, None, :, None] * width[:, None, None, None, None]
                 + col_starts[:, None, :, None, :])
        gathered = ops.take(table, ops.reshape(index, (-1,)), axis=0)
        gathered = ops.reshape(gathered, (-1, n, n, 4, channels))
        blocks[n] = _region_max(gathered, axis=3)
    finest = max(levels)
    for n in levels:
        if n not in blocks:
            # Bin i of level n is the union of bins i g .. (i + 1) g - 1 of the finest level (g = finest / n):
            # floor(i g a / finest) = floor(i a / n) and ceil((i + 1) g a / finest) = ceil((i + 1) a / n).
            group = finest // n
            fine = ops.reshape(blocks[finest], (-1, n, group, n, group, channels))
            blocks[n] = _region_max(fine, axis=(2, 4))
    return _flatten_pyramid([blocks[n] for n in levels])


def _pool_pyramid_per_region(features, batch_index, tops, rows, lefts, cols, levels):
    """The same pyramid for maps of unknown height or width: one region at a time (``ops.map``)."""
    bounds = []
    for n in levels:
        bounds.extend(bin_bounds(tops, rows, n))
        bounds.extend(bin_bounds(lefts, cols, n))

    # Pooling all regions at once would materialise a [N, h, n, w, C] mask product.
    def pool_one(item):
        index, box_bounds = item
        fmap = ops.take(features, index[None], axis=0)
        blocks = [
            pool_bins(fmap, *[b[None] for b in box_bounds[4 * k : 4 * k + 4]])
            for k in range(len(levels))
        ]
        return _flatten_pyramid(blocks)[0]

    return ops.map(pool_one, (batch_index, tuple(bounds)))


@keras.saving.register_keras_serializable(package=_SERIALIZATION_PACKAGE)
class SpatialPyramidRoIPooling(keras.layers.Layer):
    """Spatial pyramid pooling of every box over a shared feature map (SPP-net detection, paper section 4).

    The convolutional layers run once on the whole image; each candidate
    window is projected onto the conv5 map (paper appendix A, "Mapping a
    Window to Feature Maps") and a pyramid of ``n x n`` max-pooled bins (the
    paper's ``{6, 3, 2, 1}``: 50 bins, a 12,800-d vector for ZF-5's 256
    channels) is pooled over it.

    Boxes: ``[B, R, 4]`` ``[ymin, xmin, ymax, xmax]``, in input-image pixels
    (continuous coordinates: pixel ``i`` spans ``[i, i + 1)``) when
    ``image_sizes`` is None; normalised to ``[0, 1]`` (the two-stage
    detector's RoIs) when ``image_sizes`` gives the image size(s) in pixels.
    Box ``r`` of image ``b`` is pooled from image ``b``'s map.

    Projection (appendix A), with rounding: feature cell ``k`` (0-based) has its
    receptive field centred at image coordinate ``stride * k + offset``. A
    window edge pair maps to the cells whose centres lie strictly inside it::

        first cell = floor((x_min - offset) / stride) + 1
        last cell  = ceil((x_max - offset) / stride) - 1      (inclusive)

    clipped to the map. A window too small to contain a cell centre (first >
    last) uses the single cell whose centre is nearest to the window's centre
    (``floor(centre + 0.5)`` in cell units), so every region has ``a >= 1``
    cells per axis.

    Bins (Fast R-CNN's RoI pooling rule, Girshick 2015, which gives exactly
    ``n`` non-empty bins where the paper's ``ceil(a/n)`` window / ``floor(a/n)``
    stride does not): bin ``i`` of an axis of ``a`` cells spans cells
    ``[floor(i a / n), ceil((i + 1) a / n))`` of the region (integer
    arithmetic, so no float rounding). Height and width are divided
    separately, so non-square boxes get ``n`` bins along each axis.

    Multi-scale (paper section 4.1): with several ``image_sizes`` the layer is
    called with one map per scale (the same image resized to each size, the
    same backbone) and pools each box from the map of the scale where its area
    is closest to ``target_size ** 2`` pixels (:func:`select_scales`).

    Implementation (static shapes, so the train step compiles with XLA): for
    every map a range-maximum table of ``2^kh x 2^kw`` window maxima is built
    by repeated doubling (``(log2 h + 1)(log2 w + 1)`` copies at most, only up
    to the longest bin); each bin is the max of four such windows (which may
    overlap: max is idempotent), read with one gather for all boxes. Only the
    finest level (and levels that do not divide it) is read from the map; a
    coarser level ``n`` dividing the finest is the exact max over blocks of
    its bins (see :func:`_pool_pyramid_by_gather`). Maps of unknown height or
    width (single map, pixel boxes only) fall back to pooling one box at a time.

    Input: ``(features, boxes)`` as a list/tuple, or ``layer(features, boxes)``;
    ``features`` is ``[B, h, w, C]``, or a list of maps, one per image size.
    Output: ``[B, R, C * sum(n ** 2)]``, each row laid out like
    :class:`SpatialPyramidPooling`'s output.

    Args:
        levels: bins per side of each pyramid level.
        stride: total stride ``S`` of the feature map relative to the image
            (16 for ZF-5 conv5).
        offset: image coordinate of the receptive-field centre of cell 0. The
            paper's formulas assume ``0`` (every layer padded by
            ``floor(p / 2)``); other paddings need "a proper offset" (ZF-5 as
            built here: :data:`keras_pyramids.backbones.zf.CONV5_OFFSET`).
        image_sizes: None (pixel boxes, one map of any size) or the ``(H, W)``
            image size of each map in pixels (normalised boxes; maps of static
            size). More than one size enables the multi-scale choice.
        target_size: the multi-scale rule's target side (224).
    """

    # The two-stage detector's RoI pooler protocol: one map per image size.
    num_maps = 1

    def __init__(self, levels=(6, 3, 2, 1), stride=16, offset=0.0, image_sizes=None,
                 target_size=TARGET_REGION_SIZE, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.levels = _validate_levels(levels, name)
        if not isinstance(stride, (int, float)) or isinstance(stride, bool) or stride <= 0:
            raise ValueError(
                f"{name}: `stride` must be a positive number (feature "
                f"map stride in image pixels); got {stride!r}."
            )
        self.stride = stride
        self.offset = float(offset)
        self.image_sizes = None if image_sizes is None else _validate_image_sizes(image_sizes, name)
        if isinstance(target_size, bool) or not isinstance(target_size, (int, float)) or target_size <= 0:
            raise ValueError(f"{name}: `target_size` must be a positive number of pixels; got {target_size!r}.")
        self.target_size = target_size

    def _split(self, inputs, boxes):
        if boxes is None:
            if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
                raise ValueError(
                    f"{type(self).__name__} expects (features, boxes): a feature map "
                    "[B, h, w, C] (or a list of maps, one per image size) and boxes [B, R, 4]; got "
                    f"{type(inputs).__name__} of length "
                    f"{len(inputs) if isinstance(inputs, (list, tuple)) else 1}."
                )
            inputs, boxes = inputs
        maps = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        expected = 1 if self.image_sizes is None else len(self.image_sizes)
        if len(maps) != expected:
            raise ValueError(
                f"{type(self).__name__} was built for {expected} feature map(s) (image_sizes "
                f"{self.image_sizes}); got {len(maps)}."
            )
        return maps, boxes

    def _check_shapes(self, maps, boxes_shape):
        name = type(self).__name__
        for fmap in maps:
            _check_feature_map(fmap.shape, name)
        if len({fmap.shape[-1] for fmap in maps}) > 1:
            raise ValueError(f"{name}: the maps must share a channel count; got {[m.shape[-1] for m in maps]}.")
        if self.image_sizes is not None and any(None in tuple(m.shape[1:3]) for m in maps):
            raise ValueError(
                f"{name} with image_sizes needs maps of known height and width (static shapes); "
                f"got {[tuple(m.shape) for m in maps]}."
            )
        if len(boxes_shape) != 3 or boxes_shape[-1] != 4:
            units = "image pixels" if self.image_sizes is None else "normalised to [0, 1]"
            raise ValueError(
                f"{name}: boxes must have shape [batch, num_boxes, 4] holding "
                f"[ymin, xmin, ymax, xmax] in {units}; got shape {tuple(boxes_shape)}."
            )
        fb, bb = maps[0].shape[0], boxes_shape[0]
        if fb is not None and bb is not None and fb != bb:
            raise ValueError(
                f"{name}: features and boxes have different batch sizes ({fb} vs {bb})."
            )

    def _project(self, lo, hi, size):
        """Image-pixel edges ``[N]`` -> first cell ``[N]`` and region length ``[N]`` (>= 1); ``size`` cells."""
        s = ops.cast(self.stride, lo.dtype)
        lo = (lo - self.offset) / s
        hi = (hi - self.offset) / s
        first = ops.floor(lo) + 1.0
        last = ops.ceil(hi) - 1.0
        nearest = ops.floor((lo + hi) / 2.0 + 0.5)
        empty = last < first
        first = ops.where(empty, nearest, first)
        last = ops.where(empty, nearest, last)
        top = ops.cast(size, lo.dtype) - 1.0
        first = ops.cast(ops.clip(first, 0.0, top), "int32")
        last = ops.cast(ops.clip(last, 0.0, top), "int32")
        return first, last - first + 1

    def call(self, inputs, boxes=None):
        maps, boxes = self._split(inputs, boxes)
        self._check_shapes(maps, boxes.shape)
        shape = ops.shape(maps[0])
        num_boxes = ops.shape(boxes)[1]
        static = all(None not in tuple(m.shape[1:3]) for m in maps)
        if not static and (boxes.shape[0] == 0 or boxes.shape[1] == 0 or maps[0].shape[0] == 0):
            # Nothing to pool; handled up front because the TensorFlow
            # backend's ops.map probes element 0 to infer its output signature.
            length = shape[3] * sum(n * n for n in self.levels)
            return ops.zeros((shape[0], num_boxes, length), dtype=maps[0].dtype)

        # The coordinate arithmetic must not run in float16 (pixel coordinates
        # above 2048 lose integer precision there).
        flat = ops.reshape(ops.cast(boxes, "float32"), (-1, 4))
        batch_index = ops.repeat(ops.arange(shape[0], dtype="int32"), num_boxes)
        if self.image_sizes is None:
            map_index = ops.zeros_like(batch_index)
            heights = ops.cast(shape[1], "float32")
            widths = ops.cast(shape[2], "float32")
        else:
            map_index = (select_scales(flat, self.image_sizes, self.target_size) if len(maps) > 1
                         else ops.zeros_like(batch_index))

            def per_box(values):
                return ops.take(ops.convert_to_tensor(values, "float32"), map_index)

            image_h = per_box([h for h, _ in self.image_sizes])
            image_w = per_box([w for _, w in self.image_sizes])
            flat = flat * ops.stack([image_h, image_w, image_h, image_w], axis=-1)
            heights = per_box([m.shape[1] for m in maps])
            widths = per_box([m.shape[2] for m in maps])
        tops, rows = self._project(flat[:, 0], flat[:, 2], heights)
        lefts, cols = self._project(flat[:, 1], flat[:, 3], widths)
        if static:
            pooled = _pool_pyramid_by_gather(maps, batch_index, map_index, tops, rows, lefts, cols, self.levels)
        else:
            pooled = _pool_pyramid_per_region(maps[0], batch_index, tops, rows, lefts, cols, self.levels)
        return ops.reshape(pooled, (shape[0], num_boxes, shape[3] * sum(n * n for n in self.levels)))

    def compute_output_spec(self, inputs, boxes=None):
        maps, boxes = self._split(inputs, boxes)
        self._check_shapes(maps, boxes.shape)
        channels = maps[0].shape[-1]
        length = None if channels is None else pyramid_length(self.levels, channels)
        return keras.KerasTensor(
            (maps[0].shape[0], boxes.shape[1], length), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(levels=list(self.levels), stride=self.stride, offset=self.offset,
                      image_sizes=None if self.image_sizes is None else [list(s) for s in self.image_sizes],
                      target_size=self.target_size)
        return config
