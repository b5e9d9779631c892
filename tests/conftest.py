"""Shared fixtures: the loaded HED trunk, a small custom CNN, the CLI in process and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import TINY, CliResult, assert_one_line_error, build_custom_cnn, cli_env, quiet_progress

# In-process TensorFlow: keep its C++ log lines out of pytest's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread of TensorFlow per worker: the workers (and the processes they start) already keep
    # every core busy, and more threads than cores only makes them wait on each other.
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")


def pytest_configure(config):
    # Keras's own saving code trips this NumPy 2 deprecation; it is not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")
    config.addinivalue_line("markers", "slow: starts its own atlasgen process (TensorFlow and all); scheduled first")


def pytest_collection_modifyitems(config, items):
    # Longest first: the tests that start processes of their own begin while the workers are free,
    # instead of leaving one worker busy at the end.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def keras():
    from atlasgen import tf as tf_runtime

    return tf_runtime.load()[1]


@pytest.fixture(scope="session")
def hed_model():
    """atlasgen.model.weights.load_model("hed-bsds500"), loaded once. Do not change its weights."""
    from atlasgen.model.weights import load_model

    return load_model("hed-bsds500")


@pytest.fixture(scope="session")
def custom_cnn(keras):
    return build_custom_cnn(keras)


@pytest.fixture(scope="session")
def custom_cnn_path(custom_cnn, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("custom") / "tiny_cnn.keras"
    custom_cnn.save(path)
    return path


@pytest.fixture(scope="session")
def cli():
    """Runs `atlasgen ARGS...` in this process (TensorFlow starts once for every test), through the
    same entry point as the console script: exit code, stdout and stderr as a user sees them."""
    from click.testing import CliRunner

    from atlasgen.cli import main

    def run(*args) -> CliResult:
        runner = CliRunner()
        with runner.isolation() as (stdout, stderr, _):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return CliResult(code, stdout.getvalue().decode(), stderr.getvalue().decode())

    return run


@pytest.fixture(scope="session")
def run_cli():
    """Runs `python -m atlasgen.cli ARGS...` in a subprocess, for what only a new process shows
    (start-up chatter on stderr, signals, concurrency)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "atlasgen.cli", *map(str, args)],
            capture_output=True, text=True, env=cli_env(env), timeout=300,
        )

    return run


@pytest.fixture(scope="session")
def one_line_error():
    return assert_one_line_error


@pytest.fixture
def quiet():
    """A Progress that writes plain lines nowhere."""
    return quiet_progress()


@pytest.fixture
def tiny_config(tmp_path):
    """BuildConfig of the tiny real build in tmp_path, with overrides."""
    from atlasgen.build.config import BuildConfig

    def make(**overrides):
        return BuildConfig(**{**TINY, "store": tmp_path / "store", "out": tmp_path / "site", **overrides})

    return make


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """Two small probe photos, red.png and blue.png."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (30, 40), (20, 30, 220)).save(folder / "blue.png")
    return folder


def build_once(tmp_path_factory, worker_id, name: str, **settings):
    """The BuildConfig of a real atlas of block1_conv1 and block2_conv1 at 32 px (`settings` give the
    rest), built once for the whole run in <the run's temp folder>/<name>: the first xdist worker to
    ask builds it, under a lock; the others wait, then read it. Every shared atlas is built here."""
    import fcntl

    from atlasgen.build.config import BuildConfig
    from atlasgen.build.run import run_build

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the folder every worker's basetemp is in
    root = shared / name
    config = BuildConfig(**{"preset": "quick", "layers": ("block1_conv1", "block2_conv1"), "size": 32, **settings},
                         store=root / "store", out=root / "site")
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "complete").exists():
            assert run_build(config, quiet_progress()).complete
            (root / "complete").touch()
    return config


@pytest.fixture(scope="session")
def built_atlas(tmp_path_factory, worker_id):
    """One real atlas, built once for the whole run (`build_once`): filters 0-2 of block1_conv1 and
    block2_conv1 at 32 px and 4 steps, with the default probe and dataset. Read it, or copy it with
    `atlas_copy`; never change it."""
    return build_once(tmp_path_factory, worker_id, "built-atlas", filters="0-2", steps=4)


@pytest.fixture(scope="session")
def figure_atlas(tmp_path_factory, worker_id):
    """The quick atlas of the figure tests, built once for the whole run (`build_once`): filters 0-3
    of block1_conv1 and block2_conv1 at 32 px and 2 steps, dataset photos at 64 px. Never change it;
    copy it (shutil.copytree) to change it."""
    return build_once(tmp_path_factory, worker_id, "figure-atlas", filters="0-3", steps=2, dataset_size=64)


@pytest.fixture
def atlas_copy(built_atlas, tmp_path):
    """A private copy of the session's atlas (store and site) in tmp_path, and its BuildConfig."""
    import dataclasses
    import shutil

    shutil.copytree(built_atlas.store, tmp_path / "store", symlinks=True)
    shutil.copytree(built_atlas.out, tmp_path / "site", symlinks=True)
    return dataclasses.replace(built_atlas, store=tmp_path / "store", out=tmp_path / "site")
