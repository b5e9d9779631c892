"""The full preset's steps, chosen from measurement (issue 11), with before/after contact sheets.

    python benchmarks/full_steps.py [--size 224] [--layers block1_conv2,block3_conv1,block5_conv1]
                                    [--filters 0,1] [--steps 64,128,256] [--reference-steps 512]
                                    [--sheet docs/full-steps.png]

hed-bsds500 weights. For each layer and filter it makes the whole-filter image with the recipe of
ALGORITHM_VERSION 2 (Lucid's: lr 0.05, 1/f spectrum, Lucid's transforms at every layer) at
--reference-steps steps, and with today's defaults at each of --steps. It prints one JSON line per
layer with every image's pre-ReLU channel mean (the objective, measured on the final 8-bit image)
and its RGB standard deviation, then the fewest of --steps at which every image is within 5% of its
reference activation (or above it), and writes a contact sheet: one row per filter, the reference
image first, then today's at each step count, each labelled with its activation.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images
from atlasgen.model.weights import load_model

# The recipe before issue 11 (ALGORITHM_VERSION 2): SynthesisParams' defaults of that version.
REFERENCE = {"learning_rate": 0.05, "small_field_learning_rate": 0.05, "decay_power": 1.0, "fit_transforms": False,
             "lr_schedule": "constant"}
WITHIN = 0.05
LABEL = 14


def within(value: float, reference: float) -> bool:
    """Within 5% of the reference activation, or above it."""
    return value >= reference - WITHIN * abs(reference)


def sheet(rows: list[list[tuple[np.ndarray, str]]], header: list[str], tile: int) -> Image.Image:
    columns = len(header)
    out = Image.new("RGB", (columns * tile, LABEL + len(rows) * (tile + LABEL)), "white")
    draw = ImageDraw.Draw(out)
    for c, text in enumerate(header):
        draw.text((c * tile + 2, 1), text, fill="black")
    for r, row in enumerate(rows):
        top = LABEL + r * (tile + LABEL)
        for c, (image, text) in enumerate(row):
            out.paste(Image.fromarray(image).resize((tile, tile), Image.LANCZOS), (c * tile, top))
            draw.text((c * tile + 2, top + tile + 1), text, fill="black")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--layers", default="block1_conv2,block3_conv1,block5_conv1")
    parser.add_argument("--filters", default="0,1")
    parser.add_argument("--steps", default="64,128,256")
    parser.add_argument("--reference-steps", type=int, default=512)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--tile", type=int, default=160)
    parser.add_argument("--sheet", default="docs/full-steps.png")
    args = parser.parse_args()
    filters = [int(f) for f in args.filters.split(",")]
    counts = [int(s) for s in args.steps.split(",")]
    loaded = load_model("hed-bsds500")
    precision = {} if args.precision == "float32" else {"precision": args.precision}
    rows, reached = [], {n: True for n in counts}
    for layer in args.layers.split(","):
        engine = LayerEngine(loaded, layer, **precision)
        base = SynthesisParams(size=args.size, **precision)
        reference = channel_images(engine, filters, replace(base, steps=args.reference_steps, **REFERENCE))
        ours = {n: channel_images(engine, filters, replace(base, steps=n)) for n in counts}
        line = {"layer": layer, "filters": filters,
                "reference": {"steps": args.reference_steps, "objective": [round(i.objective, 3) for i in reference],
                              "std": [round(float(i.image.std()), 1) for i in reference]}}
        for n in counts:
            line[str(n)] = {"objective": [round(i.objective, 3) for i in ours[n]],
                            "std": [round(float(i.image.std()), 1) for i in ours[n]]}
            reached[n] &= all(within(o.objective, r.objective) for o, r in zip(ours[n], reference))
        print(json.dumps(line), flush=True)
        for k, f in enumerate(filters):
            row = [(reference[k].image, f"{layer} {f}: {reference[k].objective:.1f}")]
            row += [(ours[n][k].image, f"{ours[n][k].objective:.1f}") for n in counts]
            rows.append(row)
    header = [f"before: v2, {args.reference_steps} steps"] + [f"now: {n} steps" for n in counts]
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    sheet(rows, header, args.tile).save(args.sheet)
    fewest = next((n for n in counts if reached[n]), None)
    print(json.dumps({"within_5_percent": {str(n): reached[n] for n in counts}, "fewest_steps": fewest,
                      "sheet": args.sheet, "size": args.size, "precision": args.precision}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
