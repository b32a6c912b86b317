import numpy as np
import pytest

from keras_pyramids.ops.anchors import SSDAnchorGenerator, anchors_per_location, box_specs, level_scales, ssd_anchors


def test_single_level_hand_worked():
    config = SSDAnchorGenerator(min_scale=0.5, aspect_ratios=(1.0, 4.0), interpolated_scale_aspect_ratio=1.0)
    anchors = ssd_anchors([(2, 2)], (100, 100), config)
    assert anchors.shape == (2 * 2 * 3, 4)
    # Cell (0, 0), centre (0.25, 0.25): ratio 1 -> side 0.5; ratio 4 -> h 0.25, w 1.0;
    # interpolated square -> side sqrt(0.5 * 1.0).
    half = np.sqrt(0.5) / 2
    np.testing.assert_allclose(
        anchors[:3],
        [[0.0, 0.0, 0.5, 0.5], [0.125, -0.25, 0.375, 0.75], [0.25 - half, 0.25 - half, 0.25 + half, 0.25 + half]],
        atol=1e-6,
    )
    # Row-major cells: anchor 3 is cell (0, 1), centre (0.25, 0.75).
    np.testing.assert_allclose(anchors[3], [0.0, 0.5, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(anchors[9], [0.5, 0.5, 1.0, 1.0], atol=1e-6)


def test_non_square_image_gives_square_pixel_anchors():
    anchors = ssd_anchors([(1, 1)], (100, 200), SSDAnchorGenerator(min_scale=0.5, aspect_ratios=(1.0,),
                                                              interpolated_scale_aspect_ratio=0))
    # 0.5 of the shorter side = 50 px: 0.5 of the height, 0.25 of the width.
    np.testing.assert_allclose(anchors, [[0.25, 0.375, 0.75, 0.625]], atol=1e-6)


def test_ppn_scales_and_counts():
    config = SSDAnchorGenerator(min_scale=0.15, max_scale=0.95)
    np.testing.assert_allclose(level_scales(config, 6), [0.15, 0.31, 0.47, 0.63, 0.79, 0.95, 1.0])
    assert anchors_per_location(config, 6) == [6] * 6
    shapes = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert len(ssd_anchors(shapes, (300, 300), config)) == 3000


def test_reduced_lowest_layer_matches_ssd_mobilenet_reference():
    config = SSDAnchorGenerator(min_scale=0.2, max_scale=0.95, reduce_boxes_in_lowest_layer=True)
    assert box_specs(config, 6)[0] == [(0.1, 1.0), (0.2, 2.0), (0.2, 0.5)]
    assert anchors_per_location(config, 6) == [3, 6, 6, 6, 6, 6]
    shapes = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert len(ssd_anchors(shapes, (300, 300), config)) == 1917  # the reference's famous count


def test_explicit_scales_and_config_round_trip():
    config = SSDAnchorGenerator(scales=(0.1, 0.3), aspect_ratios=(1.0,), interpolated_scale_aspect_ratio=0)
    assert level_scales(config, 2) == [0.1, 0.3, 1.0]
    assert SSDAnchorGenerator.from_config(config.get_config()) == config
    with pytest.raises(ValueError, match="anchor scales have 2 entries for 3 levels"):
        level_scales(config, 3)
