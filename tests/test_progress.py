"""Progress with the time left: plain lines in logs, Keras' bar on a terminal, per training step."""

import io

import keras
import numpy as np

from keras_pyramids.progress import Progress, StepProgress, format_seconds


def test_format_seconds():
    assert [format_seconds(s) for s in (9, 75, 3725)] == ["9s", "1:15", "1:02:05"]


def test_plain_lines_when_not_interactive():
    stream = io.StringIO()
    progress = Progress(4, "image", title="Predicting", interactive=False, log_interval=0.0,
                        stream=stream)
    progress.update(1, [("loss", 0.5)])
    progress.add(3)
    progress.finish([("loss", 0.25)])
    lines = stream.getvalue().splitlines()
    # No time left after the first step (it includes start-up such as tracing), then there is.
    assert lines[0].startswith("Predicting: 1/4 images, ") and "left" not in lines[0]
    assert lines[0].endswith("loss 0.5")
    assert lines[1].startswith("Predicting: 4/4 images")
    assert lines[-1].startswith("Predicting: 4/4 images") and "left" not in lines[-1]
    assert lines[-1].endswith("loss 0.25")
    quiet = io.StringIO()
    slow = Progress(4, interactive=False, log_interval=3600, stream=quiet)
    slow.update(2)
    assert quiet.getvalue() == ""  # at most one line per interval, and one at the end


def _fit(progress, capsys):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
    x, y = np.ones((12, 2), "float32"), np.zeros((12, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[progress])
    return capsys.readouterr().out


def test_step_progress_in_logs_prints_steps_and_epoch_ends(capsys):
    out = _fit(StepProgress(interactive=False, log_interval=0.0), capsys)
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Epoch 1/2"] * 4 + ["Epoch 2/2"] * 4
    assert lines[0].startswith("Epoch 1/2: 1/3 steps") and "loss" in lines[0]
    assert lines[1].startswith("Epoch 1/2: 2/3 steps") and "left" in lines[1]
    assert lines[3].startswith("Epoch 1/2: 3/3 steps") and "lr 0.1" in lines[3]


def test_step_progress_on_a_terminal_draws_keras_bar(capsys):
    out = _fit(StepProgress(interactive=True), capsys)
    assert out.count("Epoch 1/2\n") == 1 and "Epoch 2/2" in out
    assert "3/3" in out and "━" in out and "loss:" in out and "lr:" in out
