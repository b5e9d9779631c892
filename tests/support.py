"""Plain helpers and constants the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
import io
import os
import select
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


def lines_of(stream, timeout: float = 300):
    """The lines a child process writes to `stream`, one by one as it writes them, until it closes
    it: blocking reads, no polling. Open the pipe with `bufsize=0` (bytes, nothing read ahead).
    Fails if the child stays silent for `timeout` seconds, rather than hang the run."""
    while True:
        ready, _, _ = select.select([stream], [], [], timeout)
        assert ready, f"the child printed nothing in {timeout} s"
        line = stream.readline()
        if not line:
            return
        yield line.decode(errors="replace")


def read_until(stream, text: str, timeout: float = 300) -> list[str]:
    """The child's lines on `stream` (see `lines_of`) up to and including the first that holds
    `text`; it is still running then, unless it exited right after. Fails if it closes `stream`
    first."""
    seen = []
    for line in lines_of(stream, timeout):
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"the child ended before it printed {text!r}; it printed:\n" + "".join(seen[-30:]))


def quiet_progress():
    from atlasgen.progress import Progress

    return Progress(stream=io.StringIO(), bars=False)


def key_of(i) -> str:
    """A store key for test artifact `i`."""
    from atlasgen.store import recipe_key

    return recipe_key({"algorithm": 0, "artifact": f"test-{i}"})


def payload(i, part: str, repeat: int = 64) -> bytes:
    return hashlib.sha256(f"{i}/{part}".encode()).digest() * repeat


def synthetic_manifest(layers=None, probes=("astronaut",), size=224, model="vgg16") -> dict:
    """An atlas.json as export writes it, with VGG16's real layers and fields, made-up numbers and
    no images behind it. `layers` is a list of (name, filters) and defaults to all of VGG16 (the
    full-size atlas benchmarks/render_speed.py renders; the benchmarks import it from here)."""
    from atlasgen.manifest import (
        SCHEMA_VERSION, Generator, LayerRecord, Manifest, MapRecord, Metrics, ProbeRecord, SynthesisMetrics,
        UnitRecord, Weights,
    )
    from atlasgen.names import layer_folder, probe_image, unit_folder
    from atlasgen.params import SynthesisParams
    from atlasgen.model.geometry import receptive_fields, square
    from atlasgen.model.weights import VGG16_CONVS, vgg16_ops

    fields = receptive_fields(vgg16_ops(), (size, size))
    half = min(12, size // 2)  # a 24 px field in the middle ([100, 100, 124, 124] at 224 px), inside any size
    rf_box = [size // 2 - half, size // 2 - half, size // 2 + half, size // 2 + half]
    layers = layers or [(f"block{b}_conv{i}", filters) for b, i, filters in VGG16_CONVS]

    def unit(layer: str, index: int) -> UnitRecord:
        folder = unit_folder(model, layer, index)
        maps = [MapRecord(p, {"heatmap": f"{folder}maps/{p}/heatmap.webp", "overlay": f"{folder}maps/{p}/overlay.webp"},
                          1.5, 0.25, 2.0) for p in probes]
        stats = SynthesisMetrics(3.0, 2.0, 8.0, 512)
        images = {"channel": folder + "channel.webp", "neuron": folder + "neuron.webp", "rf_crop": folder + "rf-crop.webp"}
        return UnitRecord(index, folder, images, rf_box, maps,
                          Metrics(0.25, images={"channel": stats, "neuron": SynthesisMetrics(3.0, 2.0, 8.0, 512, 0)}))

    def layer_record(name: str, count: int) -> LayerRecord:
        f = fields[name]
        return LayerRecord(name, layer_folder(model, name), count, square(f.r), square(f.S), square(f.P),
                           square(f.size), [f.size[0] // 2, f.size[1] // 2], [unit(name, i) for i in range(count)])

    return Manifest(
        schema=SCHEMA_VERSION, generator=Generator("atlasgen", "bench", 1), model=model, model_filters=4224,
        weights=Weights("imagenet", "imagenet", "ImageNet (keras.applications VGG16)", "0" * 64),
        input_convention="BGR x255 minus mean", preset="full", parameters=SynthesisParams(size=size, steps=512),
        probes=[ProbeRecord(p, "1" * 64, probe_image(p, model), 512, 512) for p in probes],
        activation_map_normalisation="post-ReLU activation / the filter's maximum over all probe photos",
        layers=[layer_record(name, count) for name, count in layers],
        name=model,
    ).to_json()


#: The folder of every atlas the tests build: the offline trunk's (atlasgen.names.atlas_name).
HED_ATLAS = "vgg16-hed-bsds500"


def write_manifest(out: Path, manifest: dict) -> Path:
    """Writes an atlas.json where the site looks for it: <out>/<its name>/atlas.json."""
    folder = out / (manifest.get("name") or "vgg16") if isinstance(manifest, dict) else out / "vgg16"
    folder.mkdir(parents=True, exist_ok=True)
    import json

    (folder / "atlas.json").write_text(json.dumps(manifest))
    return folder / "atlas.json"
