"""Rendering speed: every page of a full-size VGG16 atlas (4,224 filter pages) from a synthetic manifest.

    python benchmarks/render_speed.py [--out DIR]

No model runs: the manifest has VGG16's real layers and receptive fields and made-up metrics, and
no image files (pages only reference them). Prints the page count and seconds for a first render
and for a re-render (which rewrites nothing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from atlasgen.site.render import render_site

def synthetic_manifest(layers=None, probes=("astronaut",), size=224, model="vgg16") -> dict:
    """An atlas.json as export writes it, with VGG16's real layers and fields, made-up numbers and
    no images behind it. `layers` is a list of (name, filters) and defaults to all of VGG16."""
    from atlasgen.model.geometry import square
    from atlasgen.manifest import (
        SCHEMA_VERSION, Generator, LayerRecord, Manifest, MapRecord, Metrics, ProbeRecord, SynthesisMetrics,
        UnitRecord, Weights,
    )
    from atlasgen.names import layer_folder, probe_image, unit_folder
    from atlasgen.params import SynthesisParams
    from atlasgen.model.geometry import receptive_fields
    from atlasgen.model.weights import VGG16_CONVS, vgg16_ops

    fields = receptive_fields(vgg16_ops(), (size, size))
    layers = layers or [(f"block{b}_conv{i}", filters) for b, i, filters in VGG16_CONVS]

    def unit(layer: str, index: int) -> UnitRecord:
        folder = unit_folder(model, layer, index)
        maps = [MapRecord(p, {"heatmap": f"{folder}maps/{p}/heatmap.webp", "overlay": f"{folder}maps/{p}/overlay.webp"},
                          1.5, 0.25, 2.0) for p in probes]
        stats = SynthesisMetrics(3.0, 2.0, 8.0, 512)
        images = {"channel": folder + "channel.webp", "neuron": folder + "neuron.webp", "rf_crop": folder + "rf-crop.webp"}
        return UnitRecord(index, folder, images, [100, 100, 124, 124], maps,
                          Metrics(stats, SynthesisMetrics(3.0, 2.0, 8.0, 512, 0), 0.25))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="atlas-render-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "vgg16").mkdir(exist_ok=True)
    (out / "vgg16" / "atlas.json").write_text(json.dumps(synthetic_manifest()))
    for label in ("first render", "re-render"):
        start = time.perf_counter()
        result = render_site(out, base_url="https://example.github.io/atlas/")
        print(json.dumps({"run": label, "pages": result.pages, "filters": result.filters,
                          "seconds": round(time.perf_counter() - start, 2)}))


if __name__ == "__main__":
    main()
