"""A quiet TensorFlow start-up for the ``keras-pyramids`` command.

Importing TensorFlow 2.21 writes several lines to stderr before the command
can say anything (absl's "All log messages before absl::InitializeLog() ...",
the oneDNN notice, "Could not find cuda drivers ...", the CPU-instructions
notice), twice, because two shared libraries log as they load, and on a
machine without CUDA drivers "failed call to cuInit" when the devices are
first listed. Most come
through absl before it is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` alone does
not hide them: :func:`import_tensorflow_quietly` captures file descriptor 2
while TensorFlow loads and writes back every line that is not one of these
notices, so real errors still show.

This module uses the standard library only: it must run before TensorFlow is
imported, i.e. first thing in ``keras_pyramids/__init__.py``, and only when the
process is the command (:func:`launched_as_cli`); a program or notebook that
imports the package keeps TensorFlow's own logging.
"""

import os
import sys
import tempfile

# Parts of the start-up lines that carry no information for a user of the command.
STARTUP_NOTICES = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "cpu_feature_guard.cc",
    "To enable the following instructions:",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
)

# Expected, and so hidden, only on a machine where TF found no CUDA driver at all.
NO_DRIVER_NOTICE = "Could not find cuda drivers on your machine"
NO_DRIVER_CONSEQUENCE = "failed call to cuInit"

CLI_NAMES = ("keras-pyramids", "keras-pyramids.exe", "keras-pyramids-script.py")
CLI_MODULES = ("keras_pyramids.cli", "keras_pyramids")


def launched_as_cli(argv=None, orig_argv=None):
    """Whether this process is the ``keras-pyramids`` command (the console script or
    ``python -m keras_pyramids.cli``)."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) in CLI_NAMES:
        return True
    return any(flag == "-m" and module in CLI_MODULES
               for flag, module in zip(orig_argv, orig_argv[1:]))


def filter_startup_notices(text):
    """``text`` (captured stderr) without TensorFlow's start-up notices.

    Drops the lines holding one of :data:`STARTUP_NOTICES`, and the cuInit
    failure when TensorFlow also said it found no CUDA driver (on a machine
    with a driver, that failure is a real problem and stays).
    """
    lines = text.splitlines(keepends=True)
    no_driver = any(NO_DRIVER_NOTICE in line for line in lines)

    def hidden(line):
        return any(notice in line for notice in STARTUP_NOTICES) or (
            no_driver and NO_DRIVER_CONSEQUENCE in line)

    return "".join(line for line in lines if not hidden(line))


def import_tensorflow_quietly():
    """Imports TensorFlow and lists its devices, with the start-up notices removed from stderr.

    Listing the physical devices initialises the platforms (where the cuInit
    notice comes from) but not the runtime, so logical devices can still be
    configured afterwards.

    Also sets ``TF_CPP_MIN_LOG_LEVEL=1`` (unless the user set it) so that
    TensorFlow's C++ INFO lines stay hidden for the rest of the run; warnings
    and errors still show. Does nothing if TensorFlow is already imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = filter_startup_notices(capture.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
