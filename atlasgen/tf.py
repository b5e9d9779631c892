"""Imports TensorFlow and Keras without the start-up chatter on stderr.

TensorFlow writes absl and CUDA-probing lines to file descriptor 2 before Python logging
exists, which would break the one-line error contract of the CLI.
"""

from __future__ import annotations

import contextlib
import os
import sys

_loaded = None


@contextlib.contextmanager
def _silenced_stderr_fd():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load():
    """Returns (tensorflow, keras), importing them quietly the first time."""
    global _loaded
    if _loaded is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with _silenced_stderr_fd():
            import tensorflow as tf
            import keras

            # Device probing prints its own lines at first use; do it while stderr is muted.
            tf.config.list_physical_devices()
            keras.config.disable_interactive_logging()
            # Retracing warnings are expected: each layer, shape and objective compiles its own graph.
            tf.get_logger().setLevel("ERROR")
        _loaded = (tf, keras)
    return _loaded


class _LazyModule:
    """Stands for tensorflow or keras and imports them (quietly) at the first attribute used, so that
    importing an atlasgen module never starts TensorFlow by itself."""

    def __init__(self, index: int, name: str):
        self._index = index
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(load()[self._index], attribute)

    def __repr__(self) -> str:
        return f"<lazy {self._name}>"


tf = _LazyModule(0, "tensorflow")
keras = _LazyModule(1, "keras")
