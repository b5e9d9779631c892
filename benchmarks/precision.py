"""float32 against --precision mixed (bfloat16 compute, float32 parameters and objective), in one run.

    python benchmarks/precision.py [--filters 16] [--size 128] [--steps 32] [--layers a,b] [--batch-size N]

Workload: the first --filters filters of block1_conv1, block3_conv1 and block5_conv1 of VGG16
(hed-bsds500 weights), whole-filter and centre-neuron images, --size px, --steps steps, each
precision in its own child process, its graphs compiled before the clock starts (a 1-step run of the
same batches), batches fitted to memory for each precision as a build fits them (--batch-size sets
both). Per layer and kind it prints the wall time of each precision, the speed ratio (float32's time
over mixed's), and how far the images' activations moved: every image's final objective is the
float32 evaluation of its 8-bit image (what the build stores), and the report gives the median and
largest relative difference |mixed - float32| / |float32| over the filters, and the fraction of
filters whose mixed image reaches at least 95% of the float32 image's activation (mixed >= float32 -
0.05 |float32|, so a negative activation counts the same way). Then TensorFlow's matmul rate
(4096 x 4096, tf.function, warm) in float32 and in bfloat16, in a child of its own.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from machine import in_child

LAYERS = ("block1_conv1", "block3_conv1", "block5_conv1")
KINDS = ("channel", "neuron")


def synthesis_run(precision: str, layers: list[str], filters: list[int], size: int, steps: int,
                  batch_size: int | None) -> dict:
    """Every layer and kind in one precision: wall time, batch size and each image's stored objective."""
    from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images, neuron_images
    from atlasgen.synthesis.images import channel_batch_size, neuron_batch_size
    from atlasgen.model.weights import load_model

    loaded = load_model("hed-bsds500")
    results: dict = {}
    for layer in layers:
        engine = LayerEngine(loaded, layer, precision)
        results[layer] = {}
        for kind, make, sizer in (("channel", channel_images, channel_batch_size),
                                  ("neuron", neuron_images, neuron_batch_size)):
            params = SynthesisParams(size=size, steps=steps, precision=precision)
            batch = batch_size or sizer(engine, params, len(filters))
            make(engine, filters, SynthesisParams(size=size, steps=1, precision=precision), batch_size=batch)  # compile
            start = time.perf_counter()
            images = make(engine, filters, params, batch_size=batch)
            wall = time.perf_counter() - start
            results[layer][kind] = {"wall_s": wall, "batch": batch, "objectives": [i.objective for i in images]}
            print(f"  {precision} {layer} {kind}: {wall:.2f} s in batches of {batch}", flush=True)
    return results


def matmul_rates(n: int = 4096, repeats: int = 10) -> dict:
    """TensorFlow's warm matmul rate, FLOP/s, in float32 and in bfloat16."""
    from atlasgen.tf import load

    tf, _ = load()
    rates = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        multiply = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))
        multiply(a, b).numpy()  # trace and warm up outside the clock
        start = time.perf_counter()
        for _ in range(repeats):
            multiply(a, b).numpy()
        rates[dtype.name] = 2.0 * n**3 * repeats / (time.perf_counter() - start)
    return rates


def compare(exact: list[float], mixed: list[float]) -> dict:
    """How far mixed's activations are from float32's, filter by filter."""
    relative = [abs(m - e) / max(abs(e), 1e-12) for e, m in zip(exact, mixed)]
    reached = [m >= e - 0.05 * abs(e) for e, m in zip(exact, mixed)]
    return {"median_relative_difference": statistics.median(relative), "max_relative_difference": max(relative),
            "fraction_at_least_95_percent": sum(reached) / len(reached)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filters", type=int, default=16, help="the first N filters of each layer")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma list of conv layers")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch in both [fit to memory]")
    args = parser.parse_args()
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    filters = list(range(args.filters))

    runs = {}
    for precision in ("float32", "mixed"):
        print(f"{precision}: {len(layers)} layers x {len(filters)} filters x 2 kinds, {args.size} px, {args.steps} steps",
              flush=True)
        runs[precision] = in_child(synthesis_run, precision, layers, filters, args.size, args.steps, args.batch_size)

    report = {"filters": args.filters, "size": args.size, "steps": args.steps, "layers": {}}
    print(f"{'layer':<14} {'kind':<8} {'float32 s':>10} {'mixed s':>9} {'speed-up':>9} "
          f"{'median rel':>11} {'max rel':>9} {'>=95%':>7}")
    for layer in layers:
        report["layers"][layer] = {}
        for kind in KINDS:
            exact, mixed = runs["float32"][layer][kind], runs["mixed"][layer][kind]
            row = {
                "float32_s": exact["wall_s"], "mixed_s": mixed["wall_s"],
                "speed_ratio": exact["wall_s"] / mixed["wall_s"] if mixed["wall_s"] > 0 else None,
                "float32_batch": exact["batch"], "mixed_batch": mixed["batch"],
                **compare(exact["objectives"], mixed["objectives"]),
            }
            report["layers"][layer][kind] = row
            ratio = f"{row['speed_ratio']:.2f}x" if row["speed_ratio"] is not None else "-"
            print(f"{layer:<14} {kind:<8} {row['float32_s']:>10.2f} {row['mixed_s']:>9.2f} {ratio:>9} "
                  f"{row['median_relative_difference']:>11.3f} {row['max_relative_difference']:>9.3f} "
                  f"{row['fraction_at_least_95_percent']:>7.2f}")

    rates = in_child(matmul_rates)
    report["matmul_flops"] = rates
    print(f"matmul 4096x4096: float32 {rates['float32'] / 1e9:.1f} GFLOP/s, bfloat16 {rates['bfloat16'] / 1e9:.1f} GFLOP/s")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
