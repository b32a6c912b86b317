"""M2Det layers: hand-checked shapes, exact values, config and .keras round trips."""

import keras
import numpy as np
import pytest

from keras_pyramids.pyramids.m2det import FFMv1, FFMv2, MLFPN, SFAM, TUM, nearest_resize, tum_scales


def test_nearest_resize_exact():
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)  # [[0, 1], [2, 3]]
    np.testing.assert_array_equal(
        np.asarray(nearest_resize(x, (4, 4)))[0, :, :, 0],
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]],
    )
    # 2 -> 3 as PyTorch's nearest: source rows floor(i * 2 / 3) = 0, 0, 1.
    np.testing.assert_array_equal(np.asarray(nearest_resize(x, (3, 1)))[0, :, 0, 0], [0, 0, 2])


def test_tum_scales():
    assert tum_scales(40) == [40, 20, 10, 5, 3, 2]
    assert tum_scales(40, last_encoder_stride=1) == [40, 20, 10, 5, 3, 1]
    assert tum_scales(64) == [64, 32, 16, 8, 4, 2]
    assert tum_scales(100) == [100, 50, 25, 13, 7, 4]


def test_ffmv1_shapes_and_upsampling():
    layer = FFMv1(4, 3)
    shallow = np.random.rand(2, 8, 6, 5).astype(np.float32)
    deep = np.random.rand(2, 4, 3, 7).astype(np.float32)
    out = np.asarray(layer([shallow, deep]))
    assert out.shape == (2, 8, 6, 7)
    # The deep half is its 1x1 conv upsampled by 2: 2x2 blocks are constant.
    deep_part = out[..., 4:]
    np.testing.assert_array_equal(deep_part[:, ::2, ::2], deep_part[:, 1::2, 1::2])
    np.testing.assert_allclose(
        deep_part[:, ::2, ::2], np.asarray(layer.up_reduce(deep, training=False)), rtol=1e-5, atol=1e-6
    )
    assert layer.count_params() == 5 * 9 * 4 + 7 * 3 + 4 * (4 + 3)  # convs + BN (gamma, beta, mean, var)
    with pytest.raises(ValueError, match="integer factor"):
        FFMv1(4, 3)([shallow, deep[:, :3, :2]])


def test_ffmv2_concat():
    layer = FFMv2(3)
    base = np.random.rand(1, 5, 5, 8).astype(np.float32)
    prev = np.random.rand(1, 5, 5, 2).astype(np.float32)
    out = np.asarray(layer([base, prev]))
    assert out.shape == (1, 5, 5, 5)
    np.testing.assert_array_equal(out[..., 3:], prev)  # previous TUM output passes through
    with pytest.raises(ValueError, match="same size"):
        layer_bad = FFMv2(3)
        layer_bad([base, prev[:, :4, :4]])


def test_tum_shapes_and_params():
    tum = TUM(16, num_scales=6)
    outs = tum(np.random.rand(2, 40, 40, 16).astype(np.float32))
    assert [tuple(o.shape) for o in outs] == [(2, s, s, 8) for s in (40, 20, 10, 5, 3, 2)]
    conv3, conv1, bn = 16 * 16 * 9, 16 * 8, 4
    # 5 encoder 3x3, 5 lateral 3x3, 6 smoothing 1x1 (16 -> 8), each with BN.
    assert tum.count_params() == 10 * (conv3 + bn * 16) + 6 * (conv1 + bn * 8)
    ref = TUM(16, out_channels=16, last_encoder_stride=1)
    outs = ref(np.random.rand(1, 40, 40, 16).astype(np.float32))
    assert [tuple(o.shape[1:3]) for o in outs] == [(s, s) for s in (40, 20, 10, 5, 3, 1)]
    assert outs[0].shape[-1] == 16
    with pytest.raises(ValueError, match="too small"):
        TUM(16)(np.zeros((1, 16, 16, 16), np.float32))


def test_tum_decoder_is_upsample_plus_lateral():
    # With identity-like 1x1 convs (BN and ReLU at init are identity on positive inputs)
    # and no lateral conv, the largest output is the sum of upsampled encoder maps.
    tum = TUM(2, out_channels=2, num_scales=2, lateral_kernel_size=0)
    x = np.random.rand(1, 4, 4, 2).astype(np.float32)
    tum.build(x.shape)
    tum.smooth[0].conv.set_weights([np.eye(2, dtype=np.float32)[None, None]])
    out = np.asarray(tum(x, training=False)[0])
    deep = np.asarray(tum.encoder[0](x, training=False))
    bn_scale = 1 / np.sqrt(1 + 1e-5)  # inference BN: x / sqrt(var + eps), var 1
    expected = np.maximum((np.repeat(np.repeat(deep, 2, 1), 2, 2) + x) * bn_scale, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_sfam_concat_and_gates_exact():
    layer = SFAM(reduction=2)
    a = np.random.rand(2, 3, 3, 2).astype(np.float32)
    b = np.random.rand(2, 3, 3, 2).astype(np.float32)
    small = np.random.rand(2, 1, 1, 4).astype(np.float32)
    levels = [[a, small[..., :2]], [b, small[..., 2:]]]
    layer.build([[x.shape for x in level] for level in levels])
    # Scale 0 (C=4, C/r=2): W1 = 0, b1 = 1 -> relu gives [1, 1]; W2 = 0, b2 = g -> gate sigmoid(g).
    g = np.array([-1.0, 0.0, 1.0, 2.0], np.float32)
    layer.squeeze[0].set_weights([np.zeros((4, 2), np.float32), np.ones(2, np.float32)])
    layer.excite[0].set_weights([np.zeros((2, 4), np.float32), g])
    out = [np.asarray(o) for o in layer(levels)]
    assert out[0].shape == (2, 3, 3, 4) and out[1].shape == (2, 1, 1, 4)
    gates = 1 / (1 + np.exp(-g))
    np.testing.assert_allclose(out[0], np.concatenate([a, b], -1) * gates, rtol=1e-6)
    # A data-dependent gate: W1 = identity on channel means.
    layer.squeeze[0].set_weights([np.eye(4, 2, dtype=np.float32), np.zeros(2, np.float32)])
    layer.excite[0].set_weights([np.ones((2, 4), np.float32), np.zeros(4, np.float32)])
    x = np.concatenate([a, b], -1)
    z = x.mean(axis=(1, 2))
    s = 1 / (1 + np.exp(-(np.maximum(z[:, :2], 0).sum(-1, keepdims=True))))
    np.testing.assert_allclose(np.asarray(layer(levels)[0]), x * s[:, None, None, :], rtol=1e-5)
    # Per-scale SE: 2 scales x (4*2+2 + 2*4+4).
    assert layer.count_params() == 2 * (4 * 2 + 2 + 2 * 4 + 4)


def test_sfam_options():
    levels = [[np.ones((1, 2, 2, 4), np.float32)] * 2] * 2
    plain = SFAM(use_attention=False)
    np.testing.assert_array_equal(np.asarray(plain(levels)[0]), np.ones((1, 2, 2, 8)))
    assert plain.count_params() == 0
    shared = SFAM(reduction=4, share_attention=True)
    shared(levels)
    assert shared.count_params() == 8 * 2 + 2 + 2 * 8 + 8


def small_mlfpn(**kwargs):
    return MLFPN(num_levels=3, tum_channels=8, base_channels=(4, 4), name="mlfpn", **kwargs)


def endpoints_inputs():
    return {"C3": keras.Input((40, 40, 6), name="C3"), "C4": keras.Input((20, 20, 10), name="C4")}


def test_mlfpn_shapes_and_sharing():
    outs = small_mlfpn()(endpoints_inputs())
    assert [tuple(o.shape[1:]) for o in outs] == [(s, s, 12) for s in (40, 20, 10, 5, 3, 2)]
    separate, shared = small_mlfpn(), small_mlfpn(share_ffm2=True)
    separate(endpoints_inputs())
    shared(endpoints_inputs())
    ffm2_params = 8 * 4 + 4 * 4  # 1x1 conv base(8) -> 4, BN
    assert separate.count_params() - shared.count_params() == ffm2_params
    # Reference layout: full-width TUM outputs, so TUMs 2.. take 4 + 8 = 12 channels.
    reference = small_mlfpn(tum_out_channels=8)
    outs = reference(endpoints_inputs())
    assert [o.shape[-1] for o in outs] == [24] * 6
    assert tuple(reference.tums[1].encoder[0].conv.kernel.shape) == (3, 3, 12, 8)
    assert tuple(reference.tums[0].encoder[0].conv.kernel.shape) == (3, 3, 8, 8)
    with pytest.raises(ValueError, match="backbone maps"):
        small_mlfpn()({"conv4_3": keras.Input((40, 40, 6)), "fc7": keras.Input((20, 20, 10))})


def test_mlfpn_keras_round_trip(tmp_path):
    inputs = endpoints_inputs()
    model = keras.Model(inputs, small_mlfpn(share_attention=True, last_encoder_stride=1)(inputs))
    data = {
        "C3": np.random.rand(2, 40, 40, 6).astype(np.float32),
        "C4": np.random.rand(2, 20, 20, 10).astype(np.float32),
    }
    expected = model.predict(data, verbose=0)
    path = tmp_path / "mlfpn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for e, o in zip(expected, loaded.predict(data, verbose=0)):
        np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-6)
    config = loaded.layers[-1].get_config()
    assert config["share_attention"] and config["last_encoder_stride"] == 1 and config["tum_out_channels"] == 4
