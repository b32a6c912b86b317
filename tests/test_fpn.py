"""FPN neck: shapes for each extra-level option, exact top-down values, parameter counts, errors."""

import keras
import numpy as np
import pytest

from keras_pyramids.backbones import level_of_key
from keras_pyramids.pyramids.fpn import FeaturePyramidNetwork

R50_CHANNELS = {"C2": 256, "C3": 512, "C4": 1024, "C5": 2048}


def backbone_inputs(image_hw, channels=None, levels=(3, 4, 5)):
    """Symbolic backbone maps of an ``image_hw`` image: level l is ceil(H / 2^l) x ceil(W / 2^l)."""
    channels = channels or {f"C{level}": 8 * level for level in levels}
    return {
        f"C{level}": keras.Input(
            (-(-image_hw[0] // 2**level), -(-image_hw[1] // 2**level), channels[f"C{level}"]), name=f"C{level}"
        )
        for level in levels
    }


def spatial(outputs):
    return [tuple(o.shape[1:3]) for o in outputs]


@pytest.mark.parametrize("extra", ["conv_from_input", "conv_from_output"])
@pytest.mark.parametrize("image_hw", [(64, 64), (96, 160), (100, 100)])
def test_retinanet_levels_p3_to_p7(extra, image_hw):
    fpn = FeaturePyramidNetwork(depth=16, extra_levels=extra)
    outputs = fpn(backbone_inputs(image_hw))
    assert fpn.levels == [3, 4, 5, 6, 7]
    expected = [(-(-image_hw[0] // 2**level), -(-image_hw[1] // 2**level)) for level in range(3, 8)]
    assert spatial(outputs) == expected
    assert all(o.shape[-1] == 16 for o in outputs)
    assert [tuple(s[1:3]) for s in fpn.compute_output_shape({k: v.shape for k, v in backbone_inputs(image_hw).items()})] == expected


def test_faster_rcnn_levels_p2_to_p6_by_subsampling():
    fpn = FeaturePyramidNetwork(input_levels=("C2", "C3", "C4", "C5"), depth=8, max_level=6, extra_levels="max_pool")
    outputs = fpn(backbone_inputs((160, 96), levels=(2, 3, 4, 5)))
    assert fpn.levels == [2, 3, 4, 5, 6]
    assert spatial(outputs) == [(40, 24), (20, 12), (10, 6), (5, 3), (3, 2)]
    # P6 is P5 subsampled (kernel 1, stride 2): exactly P5[::2, ::2].
    inputs = backbone_inputs((160, 96), levels=(2, 3, 4, 5))
    model = keras.Model(inputs, fpn(inputs))
    data = {k: np.random.rand(1, *v.shape[1:]).astype(np.float32) for k, v in inputs.items()}
    p5, p6 = model.predict(data, verbose=0)[-2:]
    np.testing.assert_array_equal(p6, p5[:, ::2, ::2, :])


def test_no_extra_levels():
    fpn = FeaturePyramidNetwork(depth=8, max_level=5, extra_levels=None)
    assert spatial(fpn(backbone_inputs((64, 64)))) == [(8, 8), (4, 4), (2, 2)]


def test_top_down_exact_values_with_odd_sizes():
    """Depth 1, unit 1x1 laterals and centre-only 3x3 output convs: P_l = C_l + nearest-up(P_{l+1})."""
    inputs = {"C3": keras.Input((3, 3, 1), name="C3"), "C4": keras.Input((2, 2, 1), name="C4")}
    fpn = FeaturePyramidNetwork(input_levels=("C3", "C4"), depth=1, max_level=6, extra_levels="conv_from_output")
    model = keras.Model(inputs, fpn(inputs))
    centre = np.zeros((3, 3, 1, 1), np.float32)
    centre[1, 1] = 1.0
    for conv in fpn.lateral_convs:
        conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    for conv in fpn.output_convs + fpn.extra_ops:
        conv.set_weights([centre, np.zeros(1, np.float32)])
    c3 = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)  # [[0 1 2] [3 4 5] [6 7 8]]
    c4 = np.array([[10, 20], [30, 40]], np.float32).reshape(1, 2, 2, 1)
    p3, p4, p5, p6 = (o[0, :, :, 0] for o in model.predict({"C3": c3, "C4": c4}, verbose=0))
    # C4 upsampled to 4x4 then cropped to 3x3: cell (i, j) of P3 adds C4 cell (i // 2, j // 2).
    np.testing.assert_array_equal(p3, [[10, 11, 22], [13, 14, 25], [36, 37, 48]])
    np.testing.assert_array_equal(p4, [[10, 20], [30, 40]])
    # Extra levels: stride-2 SAME convs (TensorFlow pads an even input at the bottom/right, so
    # the centre tap of output cell 0 is input cell 1); P6 = conv(ReLU(P5)).
    np.testing.assert_array_equal(p5, [[40]])
    np.testing.assert_array_equal(p6, [[40]])


def test_r50_parameter_counts():
    """detectron2's RetinaNet R50-FPN neck: laterals + 3x3 outputs + P6 (3x3 on 2048-d C5) + P7."""
    lateral = sum(c * 256 + 256 for c in (512, 1024, 2048))
    conv3x3 = 9 * 256 * 256 + 256
    assert lateral == 918_272 and conv3x3 == 590_080
    p6_from_c5 = 9 * 2048 * 256 + 256
    fpn = FeaturePyramidNetwork()
    fpn(backbone_inputs((64, 64), R50_CHANNELS))
    assert fpn.count_params() == lateral + 3 * conv3x3 + p6_from_c5 + conv3x3 == 7_997_440
    from_p5 = FeaturePyramidNetwork(extra_levels="conv_from_output")
    from_p5(backbone_inputs((64, 64), R50_CHANNELS))
    assert from_p5.count_params() == lateral + 5 * conv3x3 == 3_868_672
    faster = FeaturePyramidNetwork(input_levels=("C2", "C3", "C4", "C5"), max_level=6, extra_levels="max_pool")
    faster(backbone_inputs((64, 64), R50_CHANNELS, levels=(2, 3, 4, 5)))
    assert faster.count_params() == 256 * 256 + 256 + lateral + 4 * conv3x3 == 3_344_384


def test_initialisation_is_detectron2_xavier_fill():
    fpn = FeaturePyramidNetwork(depth=256)
    fpn(backbone_inputs((64, 64), R50_CHANNELS))
    kernel = np.asarray(fpn.extra_ops[0].kernel)  # 3x3x2048 -> fan_in 18432
    limit = np.sqrt(3.0 / (9 * 2048))
    assert np.abs(kernel).max() <= limit * (1 + 1e-6)  # float32 rounding at the bound
    assert np.abs(kernel).max() > 0.99 * limit  # uniform, filling the range
    np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3), rtol=0.01)
    assert not np.any(np.asarray(fpn.extra_ops[0].bias))
    # Fresh initializer per conv: two same-shape convs differ.
    assert not np.array_equal(np.asarray(fpn.output_convs[0].kernel), np.asarray(fpn.output_convs[1].kernel))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"input has no \['C5'\]; it has \['C3', 'C4'\]"):
        FeaturePyramidNetwork(depth=8)(backbone_inputs((64, 64), levels=(3, 4)))
    with pytest.raises(ValueError, match=r"height of C4 is 7, so its 2x upsampling has height 14, which does not match C3 \(height 12"):
        FeaturePyramidNetwork(input_levels=("C3", "C4"), depth=8, max_level=4)(
            {"C3": keras.Input((12, 12, 4)), "C4": keras.Input((7, 6, 4))}
        )
    with pytest.raises(ValueError, match="consecutive"):
        FeaturePyramidNetwork(input_levels=("C3", "C5"))
    with pytest.raises(ValueError, match="extra_levels must say how"):
        FeaturePyramidNetwork(extra_levels=None)
    with pytest.raises(ValueError, match="extra_levels must be one of"):
        FeaturePyramidNetwork(extra_levels="p5")
    with pytest.raises(ValueError, match="Unknown level key 'res'"):
        level_of_key("res")
    assert level_of_key("C5") == 5 and level_of_key("C12") == 12


def test_config_and_keras_round_trip(tmp_path):
    inputs = backbone_inputs((64, 96))
    fpn = FeaturePyramidNetwork(depth=8, extra_levels="conv_from_output", name="fpn")
    model = keras.Model(inputs, fpn(inputs))
    again = FeaturePyramidNetwork.from_config(fpn.get_config())
    assert again.get_config() == fpn.get_config()
    data = {k: np.random.rand(2, *v.shape[1:]).astype(np.float32) for k, v in inputs.items()}
    expected = model.predict(data, verbose=0)
    path = tmp_path / "fpn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for e, o in zip(expected, loaded.predict(data, verbose=0)):
        np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("fpn").get_config()["extra_levels"] == "conv_from_output"
