"""atlasgen.tf: importing atlasgen never starts TensorFlow; the lazy proxies load it at first use.

The import check runs in a fresh interpreter: this test process has TensorFlow loaded already.
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


def test_the_proxies_load_at_their_first_attribute_and_not_before(monkeypatch):
    """In process, with a stand-in loader: the proxy asks for the modules only when an attribute is
    read. (That the real load keeps fd 2 quiet is checked on the console script in test_cli.)"""
    import types

    from atlasgen import tf as tf_module

    calls = []
    fake = (types.SimpleNamespace(constant=lambda v: ("tensor", v)), types.SimpleNamespace(layers="layers"))
    monkeypatch.setattr(tf_module, "load", lambda: calls.append(1) or fake)
    proxy_tf, proxy_keras = tf_module._LazyModule(0, "tensorflow"), tf_module._LazyModule(1, "keras")
    assert repr(proxy_tf) == "<lazy tensorflow>" and calls == []
    assert proxy_tf.constant(3) == ("tensor", 3) and proxy_keras.layers == "layers"
    assert len(calls) == 2
