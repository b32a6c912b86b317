"""FPN / RetinaNet anchors: a hand-worked tiny case, the paper's sizes and counts, errors, config."""

import numpy as np
import pytest

from keras_pyramids.ops.anchors import FPNAnchorGenerator, fpn_anchors

R2 = np.sqrt(2.0)


def test_hand_worked_two_levels():
    config = FPNAnchorGenerator(min_level=3, max_level=4, num_scales=2, aspect_ratios=(1.0, 4.0), anchor_size=2.0)
    assert config.anchors_per_location(2) == [4, 4]
    # 16x32 image: level 3 (stride 8) is 2x4, level 4 (stride 16) is 1x2.
    anchors = fpn_anchors([(2, 4), (1, 2)], (16, 32), config)
    assert anchors.dtype == np.float32 and anchors.shape == ((8 + 2) * 4, 4)
    scale = np.array([16, 32, 16, 32], np.float64)
    # Level 3, cell (0, 0), centre (4, 4) px; sides 2 * 8 * 2^(k/2) = 16, 16 sqrt2;
    # ratio w/h 4 -> h = side / 2, w = side * 2. Scales outer, ratios inner.
    expected = np.array([
        [4 - 8, 4 - 8, 4 + 8, 4 + 8],                      # k 0, ratio 1: 16 x 16
        [4 - 4, 4 - 16, 4 + 4, 4 + 16],                    # k 0, ratio 4: 8 x 32
        [4 - 8 * R2, 4 - 8 * R2, 4 + 8 * R2, 4 + 8 * R2],  # k 1, ratio 1
        [4 - 4 * R2, 4 - 16 * R2, 4 + 4 * R2, 4 + 16 * R2],  # k 1, ratio 4
    ]) / scale
    np.testing.assert_allclose(anchors[:4], expected, atol=1e-6)
    # Row-major cells: level 3 cell (1, 3) starts at row (1 * 4 + 3) * 4 = 28, centre (12, 28).
    np.testing.assert_allclose(anchors[28], np.array([4, 20, 20, 36]) / scale, atol=1e-6)
    # Level 4 follows level 3's 32 rows; its cell (0, 1) (centre (8, 24), side 32) starts at 36:
    # anchor 37 is k 0, ratio 4 -> 16 x 64.
    np.testing.assert_allclose(anchors[37], np.array([0, -8, 16, 56]) / scale, atol=1e-6)


def test_retinanet_defaults_sizes_and_count():
    config = FPNAnchorGenerator()
    assert config.anchors_per_location(5) == [9] * 5
    shapes = [(640 // 2**level,) * 2 for level in range(3, 8)]
    anchors = fpn_anchors(shapes, (640, 640), config) * 640
    assert len(anchors) == 9 * (80 * 80 + 40 * 40 + 20 * 20 + 10 * 10 + 5 * 5) == 76_725
    heights, widths = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    # Paper section 4 "Anchors": areas 32^2 (P3) .. 512^2 (P7), octaves 2^(k/3), ratios 1:2, 1:1, 2:1.
    sides = np.sqrt(heights * widths)
    np.testing.assert_allclose(sides[:9], np.repeat(32 * 2 ** (np.arange(3) / 3), 3), rtol=1e-5)
    np.testing.assert_allclose(sides[-9:], np.repeat(512 * 2 ** (np.arange(3) / 3), 3), rtol=1e-5)
    np.testing.assert_allclose((widths / heights)[:3], [0.5, 1.0, 2.0], rtol=1e-5)
    # First P3 cell centred at (4, 4) px, last P7 cell at (576, 576).
    np.testing.assert_allclose((anchors[0, :2] + anchors[0, 2:]) / 2, [4, 4], atol=1e-3)
    np.testing.assert_allclose((anchors[-1, :2] + anchors[-1, 2:]) / 2, [576, 576], atol=1e-2)


def test_odd_image_sizes_use_rounded_up_maps():
    config = FPNAnchorGenerator(min_level=3, max_level=4, num_scales=1, aspect_ratios=(1.0,))
    anchors = fpn_anchors([(13, 7), (7, 4)], (100, 50), config)
    assert len(anchors) == 13 * 7 + 7 * 4


def test_errors_name_the_problem():
    config = FPNAnchorGenerator(min_level=3, max_level=4)
    with pytest.raises(ValueError, match="got 1 feature maps for levels 3..4"):
        fpn_anchors([(8, 8)], (64, 64), config)
    with pytest.raises(ValueError, match="level-4 map is 3x4, but a 64x64 image at stride 16 gives 4x4"):
        fpn_anchors([(8, 8), (3, 4)], (64, 64), config)
    with pytest.raises(ValueError, match="min_level 5 is above max_level 4"):
        FPNAnchorGenerator(min_level=5, max_level=4)


def test_config_round_trip():
    config = FPNAnchorGenerator(min_level=2, max_level=6, num_scales=2, aspect_ratios=(1.0, 3.0), anchor_size=8.0)
    assert FPNAnchorGenerator.from_config(config.get_config()) == config
    as_json = {**config.get_config(), "aspect_ratios": [1.0, 3.0]}  # lists, as a JSON config gives them
    assert FPNAnchorGenerator.coerce(as_json) == config
    assert FPNAnchorGenerator.coerce({"num_scales": 1}) == FPNAnchorGenerator(num_scales=1)


def test_explicit_sizes_give_faster_rcnn_c4_anchors():
    # One stride-16 level, sides 32..512 x ratios 0.5, 1, 2 (15 per location), as detectron2's C4 RPN.
    config = FPNAnchorGenerator(min_level=4, max_level=4, sizes=(32, 64, 128, 256, 512))
    assert config.anchors_per_location(1) == [15]
    anchors = config([(2, 3)], (32, 48)) * np.array([32, 48, 32, 48])
    assert anchors.shape == (2 * 3 * 15, 4)
    first = anchors[:15]  # cell (0, 0), centred at (8, 8)
    heights, widths = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
    np.testing.assert_allclose(np.sqrt(heights * widths), np.repeat([32, 64, 128, 256, 512], 3), rtol=1e-5)
    np.testing.assert_allclose(widths / heights, np.tile([0.5, 1.0, 2.0], 5), rtol=1e-5)
    np.testing.assert_allclose((first[:, 0] + first[:, 2]) / 2, 8.0, atol=1e-4)
    assert FPNAnchorGenerator.coerce(config.get_config()) == config
