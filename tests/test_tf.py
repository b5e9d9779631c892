"""atlasgen.tf: importing atlasgen never starts TensorFlow; the lazy proxies load it at first use, quietly.

Each check runs in a fresh interpreter: this test process has TensorFlow loaded already, and its
environment sets TF_CPP_MIN_LOG_LEVEL, which the subprocesses here do without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "tf_keras")

IMPORT_EVERY_MODULE = r"""
import importlib, json, pkgutil, sys

import atlasgen
import atlasgen.synthesis


def fail(name):
    raise ImportError(f"cannot import {name}")


names = ["atlasgen", "atlasgen.synthesis"]
names += [info.name for info in pkgutil.walk_packages(atlasgen.__path__, "atlasgen.", onerror=fail)]
for name in names:
    importlib.import_module(name)
heavy = sorted(name for name in sys.modules if name.partition(".")[0] in %r)
print(json.dumps({"package": atlasgen.__path__[0], "imported": sorted(set(names)), "heavy": heavy}))
""" % (HEAVY,)

LAZY_LOAD = r"""
import os, sys

from atlasgen.tf import keras, load, tf

assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "imported at import time"
assert repr(tf) == "<lazy tensorflow>" and repr(keras) == "<lazy keras>"
assert "tensorflow" not in sys.modules, "repr loaded TensorFlow"

assert int(tf.constant(1).numpy()) == 1
assert "tensorflow" in sys.modules and "keras" in sys.modules, "first attribute did not load"
assert load() == (sys.modules["tensorflow"], sys.modules["keras"])
assert keras.layers is sys.modules["keras"].layers
print("loaded")
os.write(2, b"fd 2 restored\n")
"""


def quiet_env() -> dict[str, str]:
    """The user's environment without the log level this test process sets for itself."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=quiet_env(),
                          capture_output=True, text=True, timeout=300)


def module_names(package: Path) -> set[str]:
    """Every module of the package on disk, by dotted name."""
    names = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if all((package.parent.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_every_atlasgen_module_imports_no_tensorflow_or_keras():
    result = run_python(IMPORT_EVERY_MODULE)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    # Every module on disk was imported (walk_packages found them all), synthesis among them.
    assert set(report["imported"]) == module_names(Path(report["package"])), report["imported"]
    assert "atlasgen.synthesis.engine" in report["imported"]
    assert report["heavy"] == [], f"importing atlasgen imported {report['heavy']}"


def test_lazy_proxy_loads_at_first_attribute_and_keeps_stderr_quiet():
    result = run_python(LAZY_LOAD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "loaded\n", result.stdout
    # Nothing from TensorFlow or Keras on fd 2, and fd 2 works again once load() has returned.
    assert result.stderr == "fd 2 restored\n", result.stderr
