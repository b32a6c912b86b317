"""Hand-worked values of the cosine-with-warm-up schedule (OD API cosine_decay_with_warmup)."""

import math

import keras
import pytest

from keras_pyramids.training.schedules import cosine_decay_with_warmup


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_hand_worked_values():
    # base 0.8, warm-up from 0.2 over 100 steps, 300 steps in total.
    schedule = cosine_decay_with_warmup(0.8, total_steps=300, warmup_learning_rate=0.2,
                                        warmup_steps=100)
    assert _lr(schedule, 0) == pytest.approx(0.2)
    assert _lr(schedule, 50) == pytest.approx(0.5)  # 0.2 + 0.6 * 50 / 100
    assert _lr(schedule, 100) == pytest.approx(0.8)  # end of warm-up: the peak
    # Half-way through the 200 cosine steps: 0.5 * 0.8 * (1 + cos(pi / 2)) = 0.4.
    assert _lr(schedule, 200) == pytest.approx(0.4)
    # A quarter: 0.4 * (1 + cos(pi / 4)).
    assert _lr(schedule, 150) == pytest.approx(0.4 * (1 + math.cos(math.pi / 4)), rel=1e-5)
    assert _lr(schedule, 300) == pytest.approx(0.0, abs=1e-7)
    assert _lr(schedule, 1000) == pytest.approx(0.0, abs=1e-7)  # stays at 0 afterwards


def test_no_warmup_and_config_round_trip():
    schedule = cosine_decay_with_warmup(1.0, total_steps=10)
    assert _lr(schedule, 0) == pytest.approx(1.0)
    assert _lr(schedule, 5) == pytest.approx(0.5)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(
            cosine_decay_with_warmup(0.7, 500, 0.1333, 20)
        )
    )
    assert _lr(restored, 10) == pytest.approx(0.1333 + (0.7 - 0.1333) * 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [dict(base_learning_rate=0.1, total_steps=10, warmup_steps=10),
     dict(base_learning_rate=0.0, total_steps=10),
     dict(base_learning_rate=0.1, total_steps=10, warmup_steps=-1)],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        cosine_decay_with_warmup(**kwargs)


def test_warmup_then_steps_hand_worked():
    from keras_pyramids.training.schedules import WarmupPiecewiseConstant

    # M2Det's reference shape: warm-up from 1e-6 to 4e-3 over 5 steps, then 4e-3 / 2e-3 / 4e-4.
    schedule = WarmupPiecewiseConstant([90, 110], [4e-3, 2e-3, 4e-4], warmup_learning_rate=1e-6, warmup_steps=5)
    assert _lr(schedule, 0) == pytest.approx(1e-6)
    assert _lr(schedule, 2) == pytest.approx(1e-6 + (4e-3 - 1e-6) * 2 / 5)
    # A boundary step keeps the earlier rate (Keras' PiecewiseConstantDecay; M2Det's step_lr[i] >= epoch).
    assert [_lr(schedule, s) for s in (5, 90, 91, 110, 111, 10_000)] == pytest.approx(
        [4e-3, 4e-3, 2e-3, 2e-3, 4e-4, 4e-4])
    again = WarmupPiecewiseConstant.from_config(schedule.get_config())
    assert _lr(again, 100) == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="one more value than boundaries"):
        WarmupPiecewiseConstant([10], [1e-3])
