"""The cost of a full atlas, view by view: convolution FLOPs of the full preset, and projected times.

    python benchmarks/projection.py [--size 224] [--steps 512] [--diversity 2,4] [--measure-steps 8]

FLOPs are counted from VGG16's geometry (no model runs for the count): for every conv layer and
every one of its filters, one image per step goes forward through the trunk to that layer (every
earlier conv at full width, the layer itself for one filter) and backward to the input, which
costs what the forward pass does; 2 FLOPs per multiply-add. Each synthesised view of a filter:
  - whole filter, and its negative twin: (size + 2 x pad)^2 images, pad as fitted to the layer
    (atlasgen.synthesis.images.transforms_used);
  - the diversity set: N such images, plus the Gram matrices of the features that feed the layer
    (2 x h x w x c^2 per image, forward and backward);
  - centre neuron: the receptive-field patch (clipped to the image) plus its pad, an approximation
    of the engine's stride-aligned patch.
Activation maps, dataset examples (a forward pass per photo, benchmarks/examples_speed.py), wiring
(weights only, benchmarks/wiring_speed.py), kernels and the pooling layers are left out: well under
1% at these settings. For each diversity size it prints the total and its ratio to the atlas without
a set (the issue's rule: a default set whose ratio is over 2 is too dear).

It then measures atlasgen's own rate on this machine (whole-filter images of block3_conv1 and
block5_conv1, a batch of 8, `--measure-steps` steps at --size, hed-bsds500) and prints the
projected time of the full preset here, and on one H100 at 40% of its dense bf16 peak (990 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import time

from atlasgen.model.geometry import receptive_fields
from atlasgen.params import SynthesisParams
from atlasgen.model.weights import VGG16_CONVS, vgg16_ops

H100_BF16_PEAK = 990e12
H100_FRACTION = 0.4


def conv_flops(side: int, layer: str, batch_filters: int = 1) -> float:
    """Forward plus backward-to-input FLOPs for one side x side image up to `layer` (one of its filters)."""
    fields = receptive_fields(vgg16_ops(), (side, side))
    flops, c_in = 0.0, 3
    for block, index, filters in VGG16_CONVS:
        name = f"block{block}_conv{index}"
        h, w = fields[name].size
        out = batch_filters if name == layer else filters
        flops += 2.0 * h * w * 9 * c_in * out
        if name == layer:
            return 2.0 * flops
        c_in = filters
    raise ValueError(layer)


def neuron_side(size: int, layer: str, pad: int) -> int:
    field = receptive_fields(vgg16_ops(), (size, size))[layer]
    return min(field.r[0], size) + 2 * pad


def gram_flops(side: int, layer: str) -> float:
    """Forward plus backward FLOPs of one image's Gram matrix of the features that feed `layer`."""
    fields = receptive_fields(vgg16_ops(), (side, side))
    c_in, previous = 3, (side, side)
    for block, index, filters in VGG16_CONVS:
        name = f"block{block}_conv{index}"
        if name == layer:
            return 2 * 2.0 * previous[0] * previous[1] * c_in * c_in
        c_in, previous = filters, fields[name].size
    raise ValueError(layer)


def full_preset_flops(size: int, steps: int, diversity: int) -> dict:
    """FLOPs of each synthesised view of every filter of VGG16 at these settings."""
    from atlasgen.synthesis.images import CHANNEL, NEURON, transforms_used

    params = SynthesisParams(size=size, steps=steps)
    views = dict.fromkeys(("whole_filter", "negative", "diversity", "centre_neuron"), 0.0)
    for block, index, filters in VGG16_CONVS:
        layer = f"block{block}_conv{index}"
        used = transforms_used(params, receptive_fields(vgg16_ops(), (size, size))[layer])
        side = size + 2 * used[CHANNEL].pad
        whole = filters * steps * conv_flops(side, layer)
        views["whole_filter"] += whole
        views["negative"] += whole
        views["diversity"] += diversity * (whole + filters * steps * gram_flops(side, layer))
        views["centre_neuron"] += filters * steps * conv_flops(neuron_side(size, layer, used[NEURON].pad), layer)
    return {**views, "total": sum(views.values())}


def measured_rate(size: int, steps: int) -> float:
    """atlasgen's whole-filter synthesis rate on this machine, in counted FLOP/s."""
    from atlasgen.synthesis import LayerEngine, channel_images
    from atlasgen.synthesis.images import CHANNEL, transforms_used
    from atlasgen.model.weights import load_model

    loaded = load_model("hed-bsds500")
    flops = seconds = 0.0
    for layer in ("block3_conv1", "block5_conv1"):
        engine = LayerEngine(loaded, layer)
        params = SynthesisParams(size=size, steps=steps)
        channel_images(engine, list(range(8)), SynthesisParams(size=size, steps=1), batch_size=8)  # compile
        start = time.perf_counter()
        channel_images(engine, list(range(8)), params, batch_size=8)
        seconds += time.perf_counter() - start
        pad = transforms_used(params, receptive_fields(vgg16_ops(), (size, size))[layer])[CHANNEL].pad
        flops += 8 * steps * conv_flops(size + 2 * pad, layer)
    return flops / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--diversity", default="2,4", help="diversity set sizes to cost, comma-separated")
    parser.add_argument("--measure-steps", type=int, default=8)
    args = parser.parse_args()
    without = full_preset_flops(args.size, args.steps, 0)
    rate = measured_rate(args.size, args.measure_steps)
    h100 = H100_BF16_PEAK * H100_FRACTION
    report = {"size": args.size, "steps": args.steps,
              "pflop_by_view": {view: round(value / 1e15, 1) for view, value in without.items() if view != "total"},
              "pflop_without_diversity": round(without["total"] / 1e15, 1)}
    for faces in (int(n) for n in args.diversity.split(",")):
        flops = full_preset_flops(args.size, args.steps, faces)
        report[f"diversity_{faces}"] = {
            "pflop_diversity": round(flops["diversity"] / 1e15, 1), "pflop_total": round(flops["total"] / 1e15, 1),
            "ratio_to_without": round(flops["total"] / without["total"], 2),
            "this_machine_days": round(flops["total"] / rate / 86400, 1),
            "h100_at_40_percent_bf16_hours": round(flops["total"] / h100 / 3600, 2)}
    report["this_machine_gflop_per_s"] = round(rate / 1e9, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
