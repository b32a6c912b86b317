"""The command's quiet TensorFlow start-up (keras_pyramids.startup)."""

import os
import subprocess
import sys

from keras_pyramids import startup

# What TF 2.21 printed on this machine while loading (one of its two rounds) and
# when its devices were first listed.
CAPTURED = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795306907.171895    4570 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1795306907.172203    4570 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795306907.359016    4570 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1795307091.072974    8233 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""


def test_start_up_notices_are_dropped_and_other_lines_kept():
    other = "Traceback (most recent call last):\nImportError: libfoo.so: cannot open shared object file\n"
    assert startup.filter_startup_notices(CAPTURED) == ""
    assert startup.filter_startup_notices(CAPTURED + other) == other
    # With a CUDA driver present, a cuInit failure is a real problem and stays.
    cuinit = CAPTURED.splitlines(keepends=True)[-1]
    assert startup.filter_startup_notices(cuinit) == cuinit


def test_launched_as_cli():
    assert startup.launched_as_cli(["/usr/local/bin/keras-pyramids", "train"], [])
    assert startup.launched_as_cli(["-m"], ["python3", "-m", "keras_pyramids.cli", "list-models"])
    assert not startup.launched_as_cli(["train.py"], ["python3", "train.py"])
    assert not startup.launched_as_cli(["-m"], ["python3", "-m", "pytest", "keras_pyramids.cli"])


def test_the_command_starts_without_tensorflow_notices():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-m", "keras_pyramids.cli", "list-models"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ppn_mobilenet" in done.stdout.split()
    assert done.stderr == ""
