"""The cost of a full atlas: convolution FLOPs of the full preset, and projected times.

    python benchmarks/projection.py [--size 224] [--steps 512] [--measure-steps 8]

FLOPs are counted from VGG16's geometry (no model runs for the count): for every conv layer and
every one of its filters, one image per step goes forward through the trunk to that layer (every
earlier conv at full width, the layer itself for one filter) and backward to the input, which
costs what the forward pass does; 2 FLOPs per multiply-add. Whole-filter images are
(size + 2 x pad)^2; centre-neuron images are the receptive-field patch (clipped to the image) plus
the pad, an approximation of the engine's stride-aligned patch. Activation maps and the pooling
layers are left out (well under 1% at these settings).

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


def full_preset_flops(size: int, steps: int) -> dict:
    params = SynthesisParams(size=size, steps=steps)
    whole = neuron = 0.0
    for block, index, filters in VGG16_CONVS:
        layer = f"block{block}_conv{index}"
        whole += filters * steps * conv_flops(size + 2 * params.pad, layer)
        neuron += filters * steps * conv_flops(neuron_side(size, layer, params.pad), layer)
    return {"whole_filter": whole, "centre_neuron": neuron, "total": whole + neuron}


def measured_rate(size: int, steps: int) -> float:
    """atlasgen's whole-filter synthesis rate on this machine, in counted FLOP/s."""
    from atlasgen.synthesis import LayerEngine, channel_images
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
        flops += 8 * steps * conv_flops(size + 2 * params.pad, layer)
    return flops / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--measure-steps", type=int, default=8)
    args = parser.parse_args()
    flops = full_preset_flops(args.size, args.steps)
    rate = measured_rate(args.size, args.measure_steps)
    h100 = H100_BF16_PEAK * H100_FRACTION
    print(json.dumps({
        "size": args.size, "steps": args.steps,
        "pflop_whole_filter": round(flops["whole_filter"] / 1e15, 1),
        "pflop_centre_neuron": round(flops["centre_neuron"] / 1e15, 1),
        "pflop_total": round(flops["total"] / 1e15, 1),
        "this_machine_gflop_per_s": round(rate / 1e9, 1),
        "this_machine_days": round(flops["total"] / rate / 86400, 1),
        "h100_at_40_percent_bf16_minutes": round(flops["total"] / h100 / 60, 1),
    }))


if __name__ == "__main__":
    main()
