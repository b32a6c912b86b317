"""SSD anchors ("default boxes") for a list of feature-map shapes.

Liu et al., "SSD", section 2.2 "Choosing scales and aspect ratios for default
boxes" (equation 4: ``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``), in the
form of the TF Object Detection API's ``ssd_anchor_generator`` that the PPN
paper's models use (section 3: "similar anchor design as SSD").

Anchors are plain numpy arrays of static shape: they depend only on the
feature-map sizes, so they are computed once when a model is built and the
targets can be encoded in the ``tf.data`` pipeline. Boxes are
``[ymin, xmin, ymax, xmax]`` normalised to ``[0, 1]`` by the image size.
"""

import dataclasses

import keras
import numpy as np


class _DataclassGenerator:
    """What both anchor generators share: dataclass fields as their config, and building from a dict."""

    def get_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def coerce(cls, value):
        """``value`` as a generator: a generator is kept, a dict of its fields (e.g. from an
        experiment JSON's ``model_kwargs``) is built; anything else is a ``ValueError``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {field.name for field in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(
                    f"Unknown anchor setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
                )
            return cls(**value)
        raise ValueError(f"Expected an {cls.__name__} or a dict of its settings; got {value!r}.")


@keras.saving.register_keras_serializable(package="keras_pyramids")
@dataclasses.dataclass(frozen=True)
class SSDAnchorGenerator(_DataclassGenerator):
    """SSD's anchor rule as a serialisable object handed to a detector.

    ``generator(feature_shapes, image_size)`` gives the anchors of a pyramid
    (:func:`ssd_anchors`); a model stores the generator in its config, so a
    ``.keras`` file, an export and the evaluation all use the same anchors.

    Attributes:
        min_scale, max_scale: anchor side (relative to the shorter image side)
            on the first and last level; levels in between are linear.
        aspect_ratios: width / height of the anchors at every location.
        interpolated_scale_aspect_ratio: if > 0, one more anchor per location
            with this aspect ratio at scale ``sqrt(s_k * s_{k+1})`` (SSD's extra
            square box; ``s_{m+1} = 1``).
        reduce_boxes_in_lowest_layer: the first level gets only three anchors
            (scale 0.1 ratio 1, and scale ``s_1`` ratios 2 and 1/2), as the
            SSD MobileNet v1 reference does.
        scales: explicit per-level scales, overriding the linear rule (e.g. the
            M2Det size-dependent ranges); ``len == num levels``.
    """

    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    scales: tuple = None

    def __post_init__(self):
        # Lists from JSON become tuples so the generator stays hashable and equal to itself after a round trip.
        for key in ("aspect_ratios", "scales"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, tuple(float(v) for v in value))
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(
                f"Anchor scales need 0 < min_scale <= max_scale; got {self.min_scale} and {self.max_scale}."
            )
        if not self.aspect_ratios or any(not r > 0 for r in self.aspect_ratios):
            raise ValueError(f"aspect_ratios must be positive numbers; got {self.aspect_ratios}.")
        if self.scales is not None and any(not s > 0 for s in self.scales):
            raise ValueError(f"scales must be positive numbers; got {self.scales}.")

    def __call__(self, feature_shapes, image_size):
        """Anchors ``[N, 4]`` for maps ``[(h, w), ...]`` (largest first) of an ``(H, W)`` image."""
        return ssd_anchors(feature_shapes, image_size, self)

    def anchors_per_location(self, num_levels):
        """Number of anchors at each location of each of ``num_levels`` levels."""
        return anchors_per_location(self, num_levels)


def level_scales(config, num_levels):
    """Per-level scales ``s_1..s_m`` followed by ``s_{m+1} = 1`` (SSD eq. 4)."""
    if config.scales is not None:
        if len(config.scales) != num_levels:
            raise ValueError(
                f"The anchor scales have {len(config.scales)} entries for {num_levels} levels."
            )
        return list(config.scales) + [1.0]
    if num_levels == 1:
        return [config.min_scale, 1.0]
    step = (config.max_scale - config.min_scale) / (num_levels - 1)
    return [config.min_scale + step * i for i in range(num_levels)] + [1.0]


def box_specs(config, num_levels):
    """``[(scale, aspect_ratio), ...]`` for each level: the anchors at one location."""
    scales = level_scales(config, num_levels)
    specs = []
    for level in range(num_levels):
        scale, next_scale = scales[level], scales[level + 1]
        if level == 0 and config.reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        level_specs = [(scale, ratio) for ratio in config.aspect_ratios]
        if config.interpolated_scale_aspect_ratio > 0:
            level_specs.append(
                (np.sqrt(scale * next_scale), config.interpolated_scale_aspect_ratio)
            )
        specs.append(level_specs)
    return specs


def anchors_per_location(config, num_levels):
    """Number of anchors at each location of each level."""
    return [len(specs) for specs in box_specs(config, num_levels)]


def ssd_anchors(feature_shapes, image_shape, config=SSDAnchorGenerator()):
    """All anchors of a pyramid, level by level, row-major, anchors innermost.

    The order matches a head output reshaped from ``[B, h, w, A * k]`` to
    ``[B, h * w * A, k]`` and concatenated over levels.

    Args:
        feature_shapes: ``[(h, w), ...]`` of the pyramid levels, largest first.
        image_shape: ``(H, W)`` of the input image; anchors are square in pixels
            (their normalised sides are scaled by ``min(H, W) / H`` and
            ``min(H, W) / W``, as the reference's base anchor size is).
        config: :class:`SSDAnchorGenerator`.

    Returns:
        float32 array ``[sum_l h_l * w_l * A_l, 4]`` of
        ``[ymin, xmin, ymax, xmax]`` in normalised coordinates. Cell ``(i, j)``
        of an ``h x w`` level is centred at ``((i + 0.5) / h, (j + 0.5) / w)``.
    """
    image_h, image_w = image_shape
    min_side = min(image_h, image_w)
    unit_h, unit_w = min_side / image_h, min_side / image_w
    all_anchors = []
    for (h, w), specs in zip(feature_shapes, box_specs(config, len(feature_shapes))):
        scales = np.array([s for s, _ in specs], np.float64)
        ratios = np.sqrt(np.array([r for _, r in specs], np.float64))
        heights = scales / ratios * unit_h
        widths = scales * ratios * unit_w
        cy, cx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        cy = cy[:, :, None]
        cx = cx[:, :, None]
        boxes = np.stack(
            np.broadcast_arrays(
                cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2
            ),
            axis=-1,
        )
        all_anchors.append(boxes.reshape(-1, 4))
    return np.concatenate(all_anchors, axis=0).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_pyramids")
@dataclasses.dataclass(frozen=True)
class FPNAnchorGenerator(_DataclassGenerator):
    """The RetinaNet / FPN anchor rule (:func:`fpn_anchors`) as a serialisable object handed to a detector.

    Focal loss paper section 4 "Anchors": on pyramid levels P3-P7 anchors have
    areas 32^2 to 512^2, three aspect ratios {1:2, 1:1, 2:1} and, "for denser
    scale coverage", sizes {2^0, 2^(1/3), 2^(2/3)} of the base: 9 anchors per
    location. On level ``l`` (stride ``2^l``) the base side is
    ``anchor_size * 2^l`` (32 on P3 with ``anchor_size`` 4), as in the Model
    Garden's ``Anchor``.

    Attributes:
        min_level, max_level: the pyramid levels, finest first.
        num_scales: octave scales per level, ``2^(k / num_scales)``.
        aspect_ratios: width / height of the anchors (the convention of
            :class:`SSDAnchorGenerator` and the Model Garden; detectron2 and KerasHub
            use height / width, which for the symmetric (0.5, 1, 2) gives the
            same anchors in another order).
        anchor_size: base anchor side in strides.
        sizes: explicit anchor sides in pixels, the same on every level,
            replacing ``anchor_size * 2^l * 2^(k / num_scales)``: Faster R-CNN's
            C4 RPN has ``(32, 64, 128, 256, 512)`` on its one stride-16 level
            (Faster R-CNN section 3.1.1: "3 scales and 3 aspect ratios", five
            scales in detectron2's and the Model Garden's C4 configs).
        centre_offset: pixel coordinate of the centre of cell ``(0, 0)``'s
            anchors (cell ``i`` at ``i * stride + centre_offset``); None puts
            them at the centre of the patch a cell sees (``stride / 2``), which
            needs maps of ``ceil(H / stride)`` cells. A backbone whose maps
            have another size (ZF-5: unpadded pools) gives its receptive-field
            centre here, and then any map size is accepted.
    """

    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple = (0.5, 1.0, 2.0)
    anchor_size: float = 4.0
    sizes: tuple = None
    centre_offset: float = None

    def __post_init__(self):
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))
        if self.centre_offset is not None:
            object.__setattr__(self, "centre_offset", float(self.centre_offset))
        if self.sizes is not None:
            object.__setattr__(self, "sizes", tuple(float(size) for size in self.sizes))
            if not self.sizes or min(self.sizes) <= 0:
                raise ValueError(f"Anchor sizes must be positive pixel sides; got {self.sizes}.")
        if self.min_level > self.max_level:
            raise ValueError(f"min_level {self.min_level} is above max_level {self.max_level}.")
        if self.num_scales < 1 or not self.aspect_ratios:
            raise ValueError("FPN anchors need num_scales >= 1 and at least one aspect ratio.")
        if min(self.aspect_ratios) <= 0 or self.anchor_size <= 0:
            raise ValueError("FPN anchors' aspect ratios and anchor_size must be positive.")

    def __call__(self, feature_shapes, image_size):
        """Anchors ``[N, 4]`` for maps ``[(h, w), ...]`` of levels ``min_level..max_level``."""
        return fpn_anchors(feature_shapes, image_size, self)

    def anchors_per_location(self, num_levels):
        """``[A] * num_levels`` with ``A = num_scales * len(aspect_ratios)``, the same on every level."""
        expected = self.max_level - self.min_level + 1
        if num_levels != expected:
            raise ValueError(
                f"These FPN anchors are for levels {self.min_level}..{self.max_level} ({expected} maps); "
                f"the neck gives {num_levels}."
            )
        return [len(self._sides(2 ** self.min_level)) * len(self.aspect_ratios)] * num_levels

    def _sides(self, stride):
        """Anchor sides in pixels at one location of a level of ``stride``."""
        if self.sizes is not None:
            return np.asarray(self.sizes, np.float64)
        return self.anchor_size * stride * 2.0 ** (np.arange(self.num_scales) / self.num_scales)


def fpn_anchors(feature_shapes, image_size, config=FPNAnchorGenerator()):
    """All anchors of an FPN pyramid, level by level, row-major, anchors innermost.

    At cell ``(i, j)`` of level ``l`` (stride ``s = 2^l``) the anchors are
    centred at pixel ``((i + 0.5) s, (j + 0.5) s)``, the centre of the image
    patch the cell sees (the Model Garden's rule; detectron2's RetinaNet puts
    them at the patch's top-left corner, ``OFFSET = 0.0``). The ``A`` anchors
    of one location are ordered scale-major: for ``k`` in
    ``0..num_scales - 1``, for each aspect ratio ``r`` (width / height), an
    anchor of side ``anchor_size * s * 2^(k / num_scales)``, height
    ``side / sqrt(r)``, width ``side * sqrt(r)``. That is also the order of the
    ``A`` groups of channels of a head's outputs
    (:func:`keras_pyramids.heads.base.flatten_level`).

    Args:
        feature_shapes: ``[(h, w), ...]`` of levels ``min_level..max_level``;
            level ``l`` must be ``ceil(H / 2^l) x ceil(W / 2^l)`` (what
            SAME-padded stride-2 layers give) unless ``config.centre_offset``
            places the cells.
        image_size: ``(H, W)`` of the input image in pixels.
        config: :class:`FPNAnchorGenerator`.

    Returns:
        float32 array ``[sum_l h_l * w_l * A, 4]`` of
        ``[ymin, xmin, ymax, xmax]`` normalised by ``(H, W)`` (not clipped).
    """
    image_h, image_w = image_size
    levels = range(config.min_level, config.max_level + 1)
    if len(feature_shapes) != len(levels):
        raise ValueError(
            f"fpn_anchors got {len(feature_shapes)} feature maps for levels "
            f"{config.min_level}..{config.max_level} ({len(levels)} levels)."
        )
    ratios = np.sqrt(np.asarray(config.aspect_ratios, np.float64))
    all_anchors = []
    for level, (h, w) in zip(levels, feature_shapes):
        stride = 2**level
        expected = (-(-image_h // stride), -(-image_w // stride))
        if config.centre_offset is None and (h, w) != expected:
            raise ValueError(
                f"fpn_anchors: the level-{level} map is {h}x{w}, but a {image_h}x{image_w} image at "
                f"stride {stride} gives {expected[0]}x{expected[1]}."
            )
        offset = 0.5 * stride if config.centre_offset is None else config.centre_offset
        cy, cx = np.meshgrid(np.arange(h) * stride + offset, np.arange(w) * stride + offset, indexing="ij")
        cy, cx = cy[:, :, None], cx[:, :, None]
        sides = config._sides(stride)
        dy = (sides[:, None] / ratios[None, :]).reshape(-1) / 2
        dx = (sides[:, None] * ratios[None, :]).reshape(-1) / 2
        boxes = np.stack(
            np.broadcast_arrays(
                (cy - dy) / image_h, (cx - dx) / image_w, (cy + dy) / image_h, (cx + dx) / image_w
            ),
            axis=-1,
        )
        all_anchors.append(boxes.reshape(-1, 4))
    return np.concatenate(all_anchors, axis=0).astype(np.float32)
