"""Plain helpers and constants the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

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

CUSTOM_CONVS = [("c1", 8), ("dilated", 8), ("strided_same", 12), ("res_conv", 12), ("head", 16)]

# The tiny real build most tests use: two filters of block1_conv1 at 32 px and 4 steps.
TINY = dict(preset="quick", layers=("block1_conv1",), filters="0-1", size=32, steps=4)
TINY_ARGS = ["--preset", "quick", "--layers", "block1_conv1", "--filters", "0-1", "--size", "32", "--steps", "4"]


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


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The user's environment, not the quietened one of this process: the CLI must keep
    # TensorFlow's chatter off stderr on its own.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra or {})
    return env


@dataclass
class CliResult:
    """What one run of the CLI gave: the fields of subprocess.CompletedProcess that tests read."""

    returncode: int
    stdout: str
    stderr: str


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 2, stderr exactly one non-empty line starting 'Error:', no traceback anywhere."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    assert lines[0].startswith("Error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def quiet_progress():
    from atlasgen.progress import Progress

    return Progress(stream=io.StringIO(), bars=False)


def key_of(i) -> str:
    """A store key for test artifact `i`."""
    from atlasgen.store import recipe_key

    return recipe_key({"algorithm": 0, "artifact": f"test-{i}"})


def payload(i, part: str, repeat: int = 64) -> bytes:
    return hashlib.sha256(f"{i}/{part}".encode()).digest() * repeat


def synthetic_manifest(**options) -> dict:
    """benchmarks/render_speed.py's made-up atlas.json (real VGG16 fields, no images behind it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_speed", REPO / "benchmarks" / "render_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_manifest(**options)


def per_filter(probes: int = 1, dataset: bool = True) -> int:
    """How many artifacts one filter has with this many probe photos, by the kinds registry (a
    build always has a dataset: scikit-image's photos by default; a bare plan may have none)."""
    from atlasgen.build.kinds import KINDS

    return sum({"unit": 1, "unit-probe": probes}.get(kind.scope, 0) for kind in KINDS.values()
               if dataset or not kind.needs_dataset)


def builtin_chunks() -> int:
    """Chunks of the default dataset (scikit-image's photos): each layer of a build has one scan artifact per chunk."""
    from atlasgen.build.dataset import open_dataset

    return len(open_dataset(None).chunks)


def files_per_filter(probes: int = 1) -> int:
    """How many files the export writes for one filter, by the kinds registry."""
    from atlasgen.build.kinds import KINDS

    return sum(len(kind.outputs) * {"unit": 1, "unit-probe": probes}.get(kind.scope, 0) for kind in KINDS.values())


#: The folder of every atlas the tests build: the offline trunk's (atlasgen.names.atlas_name).
HED_ATLAS = "vgg16-hed-bsds500"


def write_manifest(out: Path, manifest: dict) -> Path:
    """Writes an atlas.json where the site looks for it: <out>/<its name>/atlas.json."""
    folder = out / (manifest.get("name") or "vgg16") if isinstance(manifest, dict) else out / "vgg16"
    folder.mkdir(parents=True, exist_ok=True)
    import json

    (folder / "atlas.json").write_text(json.dumps(manifest))
    return folder / "atlas.json"
