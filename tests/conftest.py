"""Shared fixtures: the loaded HED trunk, a small custom CNN, and a runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# In-process TensorFlow: keep its C++ log lines out of pytest's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent

# Araujo, Norris & Sim, Distill 2019 (google-research/receptive_field): layer -> (r, S, P).
PUBLISHED_VGG16 = {
    "block1_conv1": (3, 1, 1),
    "block2_conv1": (10, 2, 4),
    "block3_conv1": (24, 4, 10),
    "block4_conv1": (60, 8, 26),
    "block5_conv3": (196, 16, 90),
    "block5_pool": (212, 32, 90),
}
VGG16_NAMES = [f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]


def pytest_configure(config):
    # Keras's own saving code trips this NumPy 2 deprecation; it is not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(scope="session")
def keras():
    from atlasgen import tf as tf_runtime

    return tf_runtime.load()[1]


@pytest.fixture(scope="session")
def hed_model():
    """atlasgen.model.load_model("hed-bsds500"), loaded once. Do not change its weights."""
    from atlasgen.model import load_model

    return load_model("hed-bsds500")


def build_custom_cnn(keras):
    """A small CNN with every geometry case: 'same' stride 2, dilation, asymmetric padding,
    pooling, a residual Add of equal stride, cropping and a non-square kernel and stride.

    Every kernel is at least as large as the gaps between its taps, so each unit's receptive
    field is a solid box (the gradient test relies on that)."""
    L = keras.layers
    image = keras.Input((None, None, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(image)
    x = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu", name="dilated")(x)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="strided_same")(x)
    x = L.ZeroPadding2D(((1, 2), (2, 0)), name="pad")(x)
    x = L.MaxPooling2D(3, strides=2, name="pool")(x)
    branch = L.Conv2D(12, 3, padding="same", activation="relu", name="res_conv")(x)
    x = L.Add(name="add")([x, branch])
    x = L.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = L.Conv2D(16, (3, 2), strides=(2, 1), name="head")(x)
    return keras.Model(image, x, name="tiny_cnn")


CUSTOM_CONVS = [("c1", 8), ("dilated", 8), ("strided_same", 12), ("res_conv", 12), ("head", 16)]


@pytest.fixture(scope="session")
def custom_cnn(keras):
    return build_custom_cnn(keras)


@pytest.fixture(scope="session")
def custom_cnn_path(custom_cnn, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("custom") / "tiny_cnn.keras"
    custom_cnn.save(path)
    return path


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The user's environment, not the quietened one of this process: the CLI must keep
    # TensorFlow's chatter off stderr on its own.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def run_cli():
    """Runs `python -m atlasgen.cli ARGS...` in a subprocess, as a user would run `atlasgen`."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "atlasgen.cli", *map(str, args)],
            capture_output=True, text=True, env=cli_env(env), timeout=300,
        )

    return run


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, stderr exactly one non-empty line starting 'Error:', no traceback anywhere."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    assert lines[0].startswith("Error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def one_line_error():
    return assert_one_line_error
