"""RoIAlign: fixed-size bilinear crops of feature maps, one per box (He et al. 2017, Mask R-CNN).

Mask R-CNN section 3 ("RoIAlign", figure 3) replaces RoIPool's two
quantisations (box to feature grid, box to bins) by bilinear interpolation:
each of the ``out x out`` bins of a box is the average of ``s x s`` regularly
spaced sample points, each sample bilinearly interpolated from the four
nearest feature cells.

Sampling convention (the reference implementation, torchvision's
``roi_align`` kernel that detectron2's ``ROIAlign`` wraps):

- A box ``[y0, x0, y1, x1]`` in image pixels maps to feature coordinates
  ``y0 / stride - offset`` etc. With ``aligned=True`` (detectron2
  ``ROIAlignV2``, its default for every model) ``offset = 0.5``: feature cell
  ``i`` is centred on continuous coordinate ``i + 0.5``, so a pixel-exact box
  samples exactly the cells it covers. ``aligned=False`` (``offset = 0``) is
  the original Detectron / torchvision default, which also forces a box to at
  least one cell per side.
- Sample ``(iy, ix)`` of bin ``(p, q)``, ``0 <= iy, ix < s``, lies at
  ``y = y0 + (p + (iy + 0.5) / s) * h / out`` (and likewise for ``x``).
- Bilinear interpolation at ``(y, x)``: a sample with ``y < -1`` or ``y > H``
  (or ``x`` outside ``[-1, W]``) is 0; otherwise ``y`` is clamped to
  ``[0, H - 1]`` and interpolated between rows ``floor(y)`` and
  ``floor(y) + 1`` (the same for ``x``).

``sampling_ratio`` (``s``) is static: detectron2's default 0 ("adaptive",
``ceil(box side / out)`` samples per bin) gives a data-dependent number of
samples, which XLA cannot compile. torchvision's Faster / Mask R-CNN use
``sampling_ratio=2`` (``MultiScaleRoIAlign(..., sampling_ratio=2)``), our
default; the Model Garden samples once per bin (``s = 1``: one point at the bin
centre).

Multi-level (FPN, Lin et al. 2017 equation 1): a box of ``w x h`` input-image
pixels is cropped from level ``k = floor(k0 + log2(sqrt(w h) / 224))`` with
``k0 = 4``, clamped to the available levels (:func:`assign_levels`; the map of
level ``k`` has stride ``2^k``).

Implementation: all levels are flattened into one ``[B * sum_l H_l W_l, C]``
table and the four neighbours of every sample are read with one gather, as the
Model Garden's ``multilevel_crop_and_resize`` does, so every shape is static
and the op (and its gradient, a scatter-add) compiles with XLA. The weighted
average of each bin's ``(2 s)^2`` neighbours is one small matrix product. Only
``keras.ops`` is used, so it runs on every Keras backend. The gather holds
``B * R * (2 s out)^2 * C`` values (e.g. 512 RoIs, ``out = 7``, ``s = 2``,
256 channels: 103 M floats, 411 MB per image; C4's 14 x 14 crops of 1024
channels: 6.6 GB per image) unless XLA fuses it away; ``sampling_ratio=1``
quarters it.

``tf.image.crop_and_resize`` is not used: it samples a grid whose first and
last points sit on the box corners (``(H - 1)``-scaled coordinates) and puts a
constant outside ``[0, H - 1]`` instead of the clamp-then-zero border rule
above, so reproducing RoIAlign with it is not exact near the border.
"""

import math

import keras
from keras import ops

CANONICAL_BOX_SIZE = 224
CANONICAL_LEVEL = 4


def assign_levels(boxes, image_size, min_level, max_level,
                  canonical_box_size=CANONICAL_BOX_SIZE, canonical_level=CANONICAL_LEVEL):
    """Pyramid level of each box by FPN equation 1 (Lin et al. 2017, section 4.2).

    ``k = floor(canonical_level + log2(sqrt(w h) / canonical_box_size + 1e-8))``
    clamped to ``[min_level, max_level]``, with ``w, h`` in pixels of the input
    image (224 is the ImageNet pre-training size; the ``1e-8`` is detectron2's,
    so a box of exactly ``224 / 2^j`` pixels lands on level ``4 - j`` despite
    rounding and a zero-area box gets a finite level).

    Args:
        boxes: ``[..., 4]`` normalised ``[ymin, xmin, ymax, xmax]``.
        image_size: ``(H, W)`` of the input image in pixels.
        min_level, max_level: the available levels.

    Returns:
        int32 ``[...]`` levels in ``[min_level, max_level]``.
    """
    image_h, image_w = image_size
    boxes = ops.cast(boxes, "float32")
    # Flipped sides count as 0: such boxes go to the finest level like empty ones.
    heights = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * float(image_h)
    widths = ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0) * float(image_w)
    sizes = ops.sqrt(heights * widths)
    levels = ops.floor(canonical_level + ops.log2(sizes / float(canonical_box_size) + 1e-8))
    # Clamp in floating point: the cast of a huge or -inf float to int is undefined.
    return ops.cast(ops.clip(levels, float(min_level), float(max_level)), "int32")


def _check_strides(strides, num_maps):
    if isinstance(strides, (int, float)) and not isinstance(strides, bool):
        strides = (strides,)
    strides = tuple(strides)
    if len(strides) != num_maps:
        raise ValueError(f"roi_align got {num_maps} feature map(s) but {len(strides)} stride(s) {strides}.")
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in strides):
        raise ValueError(f"roi_align strides must be positive numbers; got {strides}.")
    if num_maps > 1:
        levels = [math.log2(s) for s in strides]
        if any(level != int(level) for level in levels) or any(
            b - a != 1 for a, b in zip(levels, levels[1:])
        ):
            raise ValueError(
                "Multi-level roi_align needs maps of consecutive pyramid levels, finest first "
                f"(strides 2^k, 2^(k+1), ...; e.g. (4, 8, 16, 32) for P2-P5); got strides {strides}."
            )
    return strides


def check_settings(output_size, sampling_ratio):
    """Raises a ValueError naming the problem for a bad ``output_size`` / ``sampling_ratio``."""
    if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
        raise ValueError(f"roi_align output_size must be a positive int; got {output_size!r}.")
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int) or sampling_ratio < 1:
        raise ValueError(
            f"roi_align sampling_ratio must be a positive int (samples per bin side); got {sampling_ratio!r}. "
            "detectron2's adaptive 0 (ceil(box side / output_size)) has a data-dependent sample count, "
            "which static shapes and XLA cannot express; torchvision's Faster R-CNN uses 2."
        )


def _axis_samples(start, length, output_size, sampling_ratio, size):
    """Neighbour indices and bilinear weights along one axis.

    Args:
        start, length: ``[B, R]`` box start and side in feature coordinates.
        size: ``[B, R]`` float map side (rows or columns) of each box's level.

    Returns:
        ``(indices [B, R, out, 2 s] int32, weights [B, R, out, 2 s])``: for each
        bin, the ``s`` samples' (low, high) neighbours interleaved, with the
        weights divided by ``s`` so that summing over the last axis of both
        directions averages the ``s x s`` samples.
    """
    count = output_size * sampling_ratio
    # (p + (i + 0.5) / s) * bin = (g + 0.5) / s * bin for sample g = p s + i.
    steps = (ops.arange(count, dtype="float32") + 0.5) / float(count)
    coords = start[..., None] + length[..., None] * steps  # [B, R, n]
    size = size[..., None]
    inside = ops.logical_and(coords >= -1.0, coords <= size)
    coords = ops.maximum(coords, 0.0)
    low = ops.floor(coords)
    at_end = low >= size - 1.0
    low = ops.where(at_end, size - 1.0, low)
    high = ops.where(at_end, low, low + 1.0)
    frac = ops.where(at_end, 0.0, coords - low)
    scale = ops.cast(inside, "float32") / float(sampling_ratio)
    weights = ops.stack([(1.0 - frac) * scale, frac * scale], axis=-1)  # [B, R, n, 2]
    indices = ops.cast(ops.stack([low, high], axis=-1), "int32")
    shape = ops.shape(start)
    new_shape = (shape[0], shape[1], output_size, 2 * sampling_ratio)
    return ops.reshape(indices, new_shape), ops.reshape(weights, new_shape)


def roi_align(features, boxes, image_size, strides, output_size=7, sampling_ratio=2, aligned=True,
              canonical_box_size=CANONICAL_BOX_SIZE, canonical_level=CANONICAL_LEVEL):
    """Crops ``output_size x output_size`` RoIAlign features for every box (module docstring).

    Args:
        features: one map ``[B, H, W, C]`` (C4: one map at stride 16) or a list
            of maps of consecutive pyramid levels, finest first (FPN: P2-P5 at
            strides 4-32), all with ``C`` channels.
        boxes: ``[B, R, 4]`` normalised ``[ymin, xmin, ymax, xmax]``; boxes may
            cross the image border (samples outside a map by more than one cell
            are 0) and may be degenerate (padding).
        image_size: ``(H_image, W_image)`` in pixels: boxes are scaled by it,
            and FPN's level rule uses box sizes in these pixels.
        strides: a map's stride in input pixels (int), or one per map
            (``2^k`` for level ``k``).
        output_size: bins per side (7 for an FPN box head, 14 for C4).
        sampling_ratio: samples per bin side (static; see the module docstring).
        aligned: half-pixel offset (detectron2 ``ROIAlignV2``) if True.
        canonical_box_size, canonical_level: FPN equation 1's 224 and ``k0 = 4``.

    Returns:
        ``[B, R, output_size, output_size, C]`` in the features' dtype.
    """
    maps = list(features) if isinstance(features, (list, tuple)) else [features]
    if not maps:
        raise ValueError("roi_align got an empty list of feature maps.")
    strides = _check_strides(strides, len(maps))
    check_settings(output_size, sampling_ratio)
    for m in maps:
        if len(m.shape) != 4:
            raise ValueError(f"roi_align feature maps must be [batch, height, width, channels]; got shape {m.shape}.")
    channels = maps[0].shape[-1]
    if any(m.shape[-1] != channels for m in maps):
        raise ValueError(f"roi_align feature maps must share a channel count; got {[m.shape[-1] for m in maps]}.")
    if len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"roi_align boxes must be [batch, num_boxes, 4] (normalised yxyx); got shape {boxes.shape}.")
    image_h, image_w = (float(v) for v in image_size)

    dtype = maps[0].dtype
    boxes = ops.cast(boxes, "float32")
    batch = ops.shape(maps[0])[0]
    num_boxes = ops.shape(boxes)[1]
    heights = [ops.shape(m)[1] for m in maps]
    widths = [ops.shape(m)[2] for m in maps]
    cells = [h * w for h, w in zip(heights, widths)]
    table = ops.concatenate(
        [ops.reshape(m, (batch, c, channels)) for m, c in zip(maps, cells)], axis=1
    )  # [B, S, C]
    total = sum(cells[1:], cells[0])
    table = ops.reshape(table, (-1, channels))

    if len(maps) == 1:
        box_stride = ops.full((batch, num_boxes), strides[0], dtype="float32")
        box_h = ops.full((batch, num_boxes), heights[0], dtype="int32")
        box_w = ops.full((batch, num_boxes), widths[0], dtype="int32")
        box_offset = ops.zeros((batch, num_boxes), dtype="int32")
    else:
        min_level = int(math.log2(strides[0]))
        levels = assign_levels(boxes, image_size, min_level, min_level + len(maps) - 1,
                               canonical_box_size, canonical_level) - min_level
        offsets = [0]
        for c in cells[:-1]:
            offsets.append(offsets[-1] + c)

        def per_box(values, dtype_):
            return ops.take(ops.cast(ops.stack([ops.cast(v, dtype_) for v in values]), dtype_), levels)

        box_stride = per_box(strides, "float32")
        box_h = per_box(heights, "int32")
        box_w = per_box(widths, "int32")
        box_offset = per_box(offsets, "int32")

    offset = 0.5 if aligned else 0.0
    scale = ops.convert_to_tensor([image_h, image_w, image_h, image_w], "float32")
    coords = boxes * scale / box_stride[..., None] - offset
    box_height = coords[..., 2] - coords[..., 0]
    box_width = coords[..., 3] - coords[..., 1]
    if not aligned:
        # The legacy op forces malformed boxes to at least one cell per side.
        box_height = ops.maximum(box_height, 1.0)
        box_width = ops.maximum(box_width, 1.0)
    rows, row_weights = _axis_samples(coords[..., 0], box_height, output_size, sampling_ratio,
                                      ops.cast(box_h, "float32"))
    cols, col_weights = _axis_samples(coords[..., 1], box_width, output_size, sampling_ratio,
                                      ops.cast(box_w, "float32"))

    base = ops.arange(batch, dtype="int32")[:, None] * ops.cast(total, "int32") + box_offset  # [B, R]
    # Index and weight of every (row, column) neighbour of every bin, bins first:
    # [B, R, out, 1, 2s, 1] rows x [B, R, 1, out, 1, 2s] columns -> [B, R, out, out, 2s, 2s].
    index = (base[:, :, None, None, None, None]
             + rows[:, :, :, None, :, None] * box_w[:, :, None, None, None, None]
             + cols[:, :, None, :, None, :])
    weights = row_weights[:, :, :, None, :, None] * col_weights[:, :, None, :, None, :]
    neighbours = (2 * sampling_ratio) ** 2
    gathered = ops.take(table, ops.reshape(index, (-1,)), axis=0)
    gathered = ops.reshape(gathered, (batch, num_boxes, output_size, output_size, neighbours, channels))
    weights = ops.reshape(ops.cast(weights, dtype), (batch, num_boxes, output_size, output_size, 1, neighbours))
    # A batched [1, 4 s^2] x [4 s^2, C] product per bin. Measured on CPU (notes of issue 10):
    # 2.6x (graph) to 3.5x (XLA) faster than multiply-and-sum, which XLA fuses with the gather
    # (no gathered copy in memory) but runs slowly as a fused loop.
    return ops.squeeze(ops.matmul(weights, gathered), axis=-2)


@keras.saving.register_keras_serializable(package="keras_pyramids")
class RoIAlign(keras.layers.Layer):
    """:func:`roi_align` as a layer: ``layer(features, boxes) -> [B, R, out, out, C]``.

    Args:
        strides: a map's stride (C4: 16) or one per map, finest first (FPN
            P2-P5: ``(4, 8, 16, 32)``).
        image_size: ``(H, W)`` of the model's input in pixels.
        output_size, sampling_ratio, aligned, canonical_box_size,
        canonical_level: see :func:`roi_align`.

    Call arguments:
        features: ``[B, H, W, C]`` or a list of maps matching ``strides``.
        boxes: ``[B, R, 4]`` normalised ``[ymin, xmin, ymax, xmax]``.
    """

    def __init__(self, strides, image_size, output_size=7, sampling_ratio=2, aligned=True,
                 canonical_box_size=CANONICAL_BOX_SIZE, canonical_level=CANONICAL_LEVEL, **kwargs):
        super().__init__(**kwargs)
        multi = isinstance(strides, (list, tuple))
        self.strides = _check_strides(strides, len(strides) if multi else 1)
        self.multi_level = multi
        check_settings(output_size, sampling_ratio)
        image_size = tuple(int(v) for v in image_size)
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"RoIAlign image_size must be (height, width) in pixels; got {image_size}.")
        self.image_size = image_size
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.aligned = bool(aligned)
        self.canonical_box_size = float(canonical_box_size)
        self.canonical_level = int(canonical_level)

    @property
    def num_maps(self):
        """Feature maps read (the two-stage detector's RoI pooler protocol)."""
        return len(self.strides)

    def call(self, features, boxes):
        if self.multi_level != isinstance(features, (list, tuple)):
            raise ValueError(
                f"This RoIAlign was built for {'a list of maps' if self.multi_level else 'one map'} "
                f"(strides {self.strides}); got {'a list' if isinstance(features, (list, tuple)) else 'one map'}."
            )
        return roi_align(features, boxes, self.image_size, self.strides, self.output_size,
                         self.sampling_ratio, self.aligned, self.canonical_box_size, self.canonical_level)

    def compute_output_shape(self, features_shape, boxes_shape):
        first = features_shape[0] if self.multi_level else features_shape
        return (boxes_shape[0], boxes_shape[1], self.output_size, self.output_size, first[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            strides=list(self.strides) if self.multi_level else self.strides[0],
            image_size=list(self.image_size),
            output_size=self.output_size,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
            canonical_box_size=self.canonical_box_size,
            canonical_level=self.canonical_level,
        )
        return config
