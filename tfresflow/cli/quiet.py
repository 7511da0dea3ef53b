"""TensorFlow's start-up and log noise, hidden while a command runs (``--verbose`` shows it).

Importing TensorFlow 2.21 prints a banner before its C++ logging is configured (``WARNING: All
log messages before absl::InitializeLog() ...``, the oneDNN and CPU-instruction notes, "Could
not find cuda drivers"), which ``TF_CPP_MIN_LOG_LEVEL`` cannot silence; the first device query
of a CPU-only machine logs the error line ``E0000 ... failed call to cuInit``; and during a fit
the ``tensorflow`` Python logger warns about ``tf.function`` retracing.
:func:`tensorflow_logs` hides all three for the duration of a command:

* ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it): C++ info, warning and error messages
  off (an op's error that matters reaches Python as an exception with its message; the error
  lines logged beside it, e.g. ``Eigen::BDCSVD failed`` of a diverged fit, are noise);
* ``import tensorflow`` and the first device query run with the process's stderr (file
  descriptor 2) sent to a temporary file, which is replayed on stderr if the import fails, so
  a broken installation still explains itself;
* the ``tensorflow`` and ``absl`` Python loggers at ERROR level.

Python warnings (``warnings.warn``) are left alone: they are the package's own messages.
Everything is restored when the command ends (so calling :func:`tfresflow.cli.main` in a
program or a test leaves its logging as it was).
"""
import contextlib
import logging
import os
import sys
import tempfile


@contextlib.contextmanager
def _stderr_fd_captured():
    """Sends file descriptor 2 to a temporary file; replays it on stderr if the body raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_tensorflow_quietly():
    with _stderr_fd_captured():
        import tensorflow as tf
        tf.config.list_physical_devices()   # the device query that logs cuInit's failure
        import keras  # noqa: F401
    return tf


@contextlib.contextmanager
def tensorflow_logs(verbose=False):
    """Runs the body with TensorFlow's log noise hidden, or untouched when ``verbose``.

    TensorFlow and Keras are imported here (quietly) when not yet imported: every command
    needs them, and only their first import prints the banner.
    """
    if verbose:
        yield
        return
    env_before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        tf = sys.modules.get("tensorflow") or _import_tensorflow_quietly()
        from absl import logging as absl_logging

        loggers = [tf.get_logger(), logging.getLogger("absl")]
        levels = [logger.level for logger in loggers]
        absl_before = absl_logging.get_verbosity()
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        absl_logging.set_verbosity(absl_logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
            absl_logging.set_verbosity(absl_before)
    finally:
        if env_before is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
