"""atlasgen against tf-keras-vis, against Xplique's MACO and against the machine's limit, in one run (issue 6).

The peers are not dependencies of atlasgen. Install them with

    pip install tf-keras-vis
    pip install --no-deps xplique==2.0.2
    pip install deprecated einops matplotlib opencv-python-headless tensorflow-probability "tf-keras==2.21.*" scikit-learn

(`pip install -e '.[bench]'` installs tf-keras-vis and Xplique's runtime dependencies, but not
Xplique itself: Xplique 2.0.2 pins an older TensorFlow, so it goes in with --no-deps.) Then

    python benchmarks/run.py [--filters 16] [--steps 128] [--size 128] [--skip-noop]
        [--xplique-filters 4] [--xplique-steps 256] [--xplique-crops 4] [--xplique-size 128]
        [--xplique-box-size F] [--skip-xplique]

Workload: the first --filters filters of block1_conv1, block3_conv1 and block5_conv1 of VGG16
(hed-bsds500 weights), whole-filter and centre-neuron images, --size px, --steps steps.

- tf-keras-vis the way its documentation does it: ExtractIntermediateLayer + ReplaceToLinear on a
  model that takes RGB 0..255 (the VGG preprocessing is its first layer), a score on the channel
  mean or on the centre unit, the filters of a layer batched, its default input modifiers,
  regularisers and optimiser.
- atlasgen's engine on the same filters, batch size chosen from memory.
Each engine runs in its own child process (so its peak memory is its own), graphs compiled before
the clock starts. Every image's achieved pre-ReLU activation (the channel mean, or the centre unit)
is measured by the same code on the final 8-bit image.
- Equal steps: throughput ratio and activation ratio when both run --steps steps.
- Time to quality: tf-keras-vis's wall time for its --steps steps, over atlasgen's wall time for the
  fewest steps (of TTQ_STEPS below --steps, then --steps) at which every image of a layer and kind reached the
  activation tf-keras-vis reached for the same filter.
- The machine's limit: float32 matmul FLOP rate in TensorFlow against atlasgen's convolution FLOP
  rate on the whole-filter workload (forward, plus backward to the input, of the truncated model).
- No-op rebuild: wall time of `atlasgen build --preset quick` on a finished store.
- Xplique's MACO (xplique.features_visualizations.maco, 2.0.2) against atlasgen's MACO
  (maco_batch): the first --xplique-filters filters of block3_conv1 and block5_conv1, the filter's
  pre-ReLU channel mean (Objective.channel on a copy of the model whose target layer has no ReLU,
  taking RGB in [0, 1], maco's values_range), --xplique-size px images (maco's custom_shape, and the
  model's input, to which maco resizes its crops), --xplique-steps steps, --xplique-crops crops per
  step for both (default: atlasgen's MacoParams.crops); otherwise Xplique's defaults (Nadam 1.0,
  noise 0.08, crops shrinking from 0.5 to 0.05 of the image) and atlasgen's. maco optimises one
  objective per call, so Xplique runs the filters one after another; atlasgen runs them as one
  batch. Both traced before the clock starts (a 1-step run each). Activations are measured by the
  same code on the final 8-bit images. Time to quality: Xplique's wall time over atlasgen MACO's
  for the fewest steps (of TTQ_STEPS below --xplique-steps, then it) at which every image of a layer reached
  Xplique's activation for the same filter. If Xplique does not import, the run says so and skips it.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from machine import in_child, matmul_peak_flops

LAYERS = ("block1_conv1", "block3_conv1", "block5_conv1")
KINDS = ("channel", "neuron")
XPLIQUE_LAYERS = ("block3_conv1", "block5_conv1")
TTQ_STEPS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def achieved(engine, images, filters, kind, size):
    """Pre-ReLU activation of each image's own filter: channel mean, or the centre unit."""
    import numpy as np

    from atlasgen.tf import load

    tf, _ = load()
    maps = engine.own_maps(tf.constant(np.asarray(images, np.float32) / 255.0), tf.constant(filters, tf.int32)).numpy()
    if kind == "channel":
        return maps.mean(axis=(1, 2)).tolist()
    uy, ux = engine.field((size, size)).centre_unit((size, size))
    return maps[:, uy, ux].tolist()


def run_peer(filters: list[int], size: int, steps: int, seed: int = 1) -> dict:
    import numpy as np

    from atlasgen.model.weights import load_model
    from atlasgen.synthesis import LayerEngine
    from atlasgen.tf import load

    tf, keras = load()
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer, ReplaceToLinear

    @keras.saving.register_keras_serializable(package="atlasgen_bench")
    class CaffeInput(keras.layers.Layer):
        """RGB 0..255 to the trunk's BGR-minus-mean input, so tf-keras-vis optimises plain pixels."""

        def __init__(self, mean=(0.0, 0.0, 0.0), **kwargs):
            super().__init__(**kwargs)
            self.mean = tuple(float(m) for m in mean)

        def call(self, images):
            return images[..., ::-1] - tf.constant(self.mean)

        def get_config(self):
            return {**super().get_config(), "mean": self.mean}

    loaded = load_model("hed-bsds500")
    results = {}
    for layer in LAYERS:
        image = keras.Input((size, size, 3))
        x = CaffeInput(loaded.input_convention.mean, name="caffe_input")(image)
        for part in loaded.model.layers[1:]:
            x = part(x)
            if part.name == layer:
                break
        model = keras.Model(image, x)
        engine = LayerEngine(loaded, layer)
        uy, ux = engine.field((size, size)).centre_unit((size, size))
        scores = {
            "channel": lambda out: tf.stack([tf.reduce_mean(out[i, ..., f]) for i, f in enumerate(filters)]),
            "neuron": lambda out: tf.stack([out[i, uy, ux, f] for i, f in enumerate(filters)]),
        }
        maximiser = ActivationMaximization(model, model_modifier=[ExtractIntermediateLayer(layer), ReplaceToLinear()])
        results[layer] = {}
        for kind in KINDS:
            tf.random.set_seed(seed)  # its input modifiers draw from TensorFlow's global generator
            start_images = tf.random.uniform((len(filters), size, size, 3), 0, 255, seed=seed)
            maximiser(scores[kind], seed_input=start_images, steps=1)  # trace outside the clock
            start = time.perf_counter()
            images = maximiser(scores[kind], seed_input=start_images, steps=steps)
            images = np.clip(np.round(np.asarray(images)), 0, 255)
            wall = time.perf_counter() - start
            results[layer][kind] = {"wall_s": wall, "activations": achieved(engine, images, filters, kind, size)}
            print(f"  tf-keras-vis (seed {seed}) {layer} {kind}: {wall:.1f} s; activations "
                  f"{[round(a, 1) for a in results[layer][kind]['activations']]}", flush=True)
    return {"layers": results, "peak_rss_mb": peak_rss_mb()}


def best_of(runs: list[dict]) -> dict:
    """The peer's runs from several seeds as one: each image's best activation over them (its own
    run-to-run noise then never decides a comparison in atlasgen's favour), each layer and kind's
    median wall time, and the largest peak memory."""
    layers = {}
    for layer in runs[0]["layers"]:
        layers[layer] = {}
        for kind, first in runs[0]["layers"][layer].items():
            every = [run["layers"][layer][kind] for run in runs]
            layers[layer][kind] = {"wall_s": statistics.median(r["wall_s"] for r in every),
                                   "activations": [max(values) for values in zip(*(r["activations"] for r in every))],
                                   "seed_activations": [r["activations"] for r in every]}
    return {"layers": layers, "peak_rss_mb": max(run["peak_rss_mb"] for run in runs), "seeds": len(runs)}


def conv_flops_per_image_step(engine, size: int, batch: int) -> float:
    """Forward plus backward-to-input FLOPs of the truncated model for one image at the padded size."""
    fields = engine.geometry.fields((size, size))
    flops = 0.0
    for layer in engine.trunk.layers + [engine.layer]:
        if type(layer).__name__ != "Conv2D":
            continue
        h, w = fields[layer.name].size
        k = layer.kernel.shape
        out_channels = batch if layer is engine.layer else k[3]  # the target layer: only the batch's filters
        flops += 2.0 * h * w * k[0] * k[1] * k[2] * out_channels
    return 2.0 * flops  # backward to the input costs what the forward pass does


def run_atlasgen(filters: list[int], size: int, steps: int, peer: dict, precision: str = "float32") -> dict:
    from atlasgen.model.weights import load_model
    from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images, neuron_images
    from atlasgen.synthesis.images import channel_batch_size, fitted_to_field, neuron_batch_size

    loaded = load_model("hed-bsds500")
    results, flops, flop_seconds = {}, 0.0, 0.0
    for layer in LAYERS:
        engine = LayerEngine(loaded, layer, precision=precision)
        results[layer] = {}
        for kind, make, sizer in (("channel", channel_images, channel_batch_size), ("neuron", neuron_images, neuron_batch_size)):
            params = SynthesisParams(size=size, steps=steps, precision=precision)
            batch = sizer(engine, params, len(filters))
            make(engine, filters, replace(params, steps=1), batch_size=batch)  # compile
            start = time.perf_counter()
            images = make(engine, filters, params, batch_size=batch)
            wall = time.perf_counter() - start
            activations = [r.objective for r in images]
            target = peer["layers"][layer][kind]["activations"]
            ttq_steps, ttq_wall = (steps, wall) if all(a >= t for a, t in zip(activations, target)) else (None, None)
            for fewer in TTQ_STEPS:
                if fewer >= steps or (ttq_steps is not None and fewer >= ttq_steps):
                    break
                start = time.perf_counter()
                short = make(engine, filters, replace(params, steps=fewer), batch_size=batch)
                short_wall = time.perf_counter() - start
                if all(r.objective >= t for r, t in zip(short, target)):
                    ttq_steps, ttq_wall = fewer, short_wall
                    break
            pad = fitted_to_field(params, min(engine.field((size, size)).r)).pad if params.fit_transforms else params.pad
            results[layer][kind] = {"wall_s": wall, "activations": activations, "batch_size": batch,
                                    "ttq_steps": ttq_steps, "ttq_wall_s": ttq_wall,
                                    "estimated_activation_mb": (engine.bytes_per_image((size + 2 * pad,) * 2) * batch / 2**20
                                                                if kind == "channel" else None)}
            if kind == "channel":
                flops += conv_flops_per_image_step(engine, size + 2 * pad, batch) * len(filters) * steps
                flop_seconds += wall
            print(f"  atlasgen {layer} {kind}: {wall:.1f} s (batch {batch}); quality reached at {ttq_steps} steps", flush=True)
    return {"layers": results, "peak_rss_mb": peak_rss_mb(), "whole_filter_flops": flops, "whole_filter_s": flop_seconds}


def _xplique_import_error() -> str | None:
    """None when Xplique's maco imports, else the reason in one line."""
    try:
        from atlasgen.tf import load

        load()  # TensorFlow quietly first; Xplique imports it on its own otherwise
        from xplique.features_visualizations import Objective, maco  # noqa: F401
    except Exception as error:  # ImportError, or an incompatible TensorFlow failing inside it
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def run_xplique(filters: list[int], size: int, steps: int, crops: int, box_size: float | None = None) -> dict:
    """Xplique 2.0.2's maco, one filter at a time (it optimises one objective per call), on the
    pre-ReLU channel mean of each filter, with its own defaults but the image size and crops."""
    error = _xplique_import_error()
    if error is not None:
        return {"error": error}
    import importlib

    import numpy as np

    from atlasgen.synthesis import LayerEngine
    from atlasgen.tf import load
    from atlasgen.model.weights import load_model

    tf, keras = load()
    from xplique.features_visualizations import Objective, maco

    # The package's `maco` is the function; its module holds the tf.function of one step.
    step_function = importlib.import_module("xplique.features_visualizations.maco").maco_optimisation_step

    class ModelInput(keras.layers.Layer):
        """RGB in [0, 1] (maco's values_range below) to the trunk's own input convention."""

        def __init__(self, convention, **kwargs):
            super().__init__(**kwargs)
            self.bgr = convention.channel_order == "BGR"
            self.scale = float(convention.scale)
            self.mean = tuple(float(m) for m in convention.mean)

        def call(self, images):
            images = images[..., ::-1] if self.bgr else images
            return images * self.scale - tf.constant(self.mean)

    class CompiledOnce(Objective):
        """maco calls objective.compile() on every run, and the fresh model and loss it returns make
        its tf.function trace again; compiling once lets a 1-step run take the trace off the clock."""

        def compile(self):
            if not hasattr(self, "_compiled"):
                self._compiled = super().compile()
            return self._compiled

    loaded = load_model("hed-bsds500")
    values_range = (0.0, 1.0)  # noise_intensity 0.08 is then on [0, 1] pixels, as in atlasgen's MACO
    results = {}
    for layer in XPLIQUE_LAYERS:
        image = keras.Input((size, size, 3))
        x = ModelInput(loaded.input_convention, name="model_input")(image)
        for part in loaded.model.layers[1:]:
            if part.name == layer:
                break
            x = part(x)
        # The target layer without its ReLU (what tf-keras-vis's ReplaceToLinear does): the
        # objective is the pre-ReLU channel mean, as for atlasgen.
        target = loaded.model.get_layer(layer)
        linear = keras.layers.Conv2D.from_config({**target.get_config(), "activation": "linear"})
        x = linear(x)
        linear.set_weights(target.get_weights())
        model = keras.Model(image, x)
        engine = LayerEngine(loaded, layer)
        images, wall, trace = [], 0.0, 0.0
        for f in filters:
            objective = Objective.channel(model, layer, f)  # mean of map * one-hot mask: the spatial mean / channels
            objective = CompiledOnce(objective.model, objective.layers, objective.masks, objective.funcs,
                                     objective.multipliers, objective.names)
            kwargs = dict(nb_crops=crops, values_range=values_range, custom_shape=(size, size), box_size=box_size)
            np.random.seed(f)  # maco draws its initial phase from NumPy's global generator
            tf.random.set_seed(f)
            start = time.perf_counter()
            maco(objective, nb_steps=1, **kwargs)  # trace outside the clock
            trace += time.perf_counter() - start
            traces = step_function.experimental_get_tracing_count()
            start = time.perf_counter()
            # A fresh Nadam(1.0) per run, as maco makes when given none.
            picture, _ = maco(objective, nb_steps=steps, **kwargs)
            picture = np.clip(np.round(np.asarray(picture) * 255.0), 0, 255)
            wall += time.perf_counter() - start
            if step_function.experimental_get_tracing_count() != traces:
                print(f"  xplique {layer} filter {f}: traced again inside the clock", flush=True)
            images.append(picture)
        activations = achieved(engine, np.stack(images), filters, "channel", size)
        results[layer] = {"wall_s": wall, "trace_s": trace, "activations": activations}
        print(f"  xplique maco {layer}: {wall:.1f} s; activations {[round(a, 1) for a in activations]}", flush=True)
    return {"layers": results, "peak_rss_mb": peak_rss_mb()}


def run_atlasgen_maco(filters: list[int], size: int, steps: int, crops: int, target: dict, precision: str = "float32") -> dict:
    """atlasgen's MACO on the same filters, all in one batch, at the same size, steps and crops per
    step; time to quality against `target` (per layer, the activations Xplique reached)."""
    import numpy as np

    from atlasgen.synthesis import LayerEngine
    from atlasgen.synthesis.maco import MacoParams, maco_batch
    from atlasgen.model.weights import load_model

    loaded = load_model("hed-bsds500")

    def activations(engine, records):
        return achieved(engine, np.stack([r.image for r in records]).astype(np.float32), filters, "channel", size)

    results = {}
    for layer in XPLIQUE_LAYERS:
        engine = LayerEngine(loaded, layer, precision=precision)
        params = MacoParams(size=size, steps=steps, crops=crops, precision=precision)
        maco_batch(engine, filters, replace(params, steps=1))  # compile; steps are a graph input
        start = time.perf_counter()
        records = maco_batch(engine, filters, params)
        wall = time.perf_counter() - start
        reached = activations(engine, records)
        goal = target[layer]["activations"]
        ttq_steps, ttq_wall = (steps, wall) if all(a >= t for a, t in zip(reached, goal)) else (None, None)
        for fewer in TTQ_STEPS:
            if fewer >= steps or (ttq_steps is not None and fewer >= ttq_steps):
                break
            start = time.perf_counter()
            short = maco_batch(engine, filters, replace(params, steps=fewer))
            short_wall = time.perf_counter() - start
            if all(a >= t for a, t in zip(activations(engine, short), goal)):
                ttq_steps, ttq_wall = fewer, short_wall
                break
        results[layer] = {"wall_s": wall, "activations": reached, "batch_size": len(filters),
                          "ttq_steps": ttq_steps, "ttq_wall_s": ttq_wall}
        print(f"  atlasgen maco {layer}: {wall:.1f} s (batch {len(filters)}); Xplique's activation reached at "
              f"{ttq_steps} steps", flush=True)
    return {"layers": results, "peak_rss_mb": peak_rss_mb()}


def noop_rebuild_s() -> float:
    folder = Path(tempfile.mkdtemp(prefix="atlas-noop-"))
    command = [sys.executable, "-m", "atlasgen.cli", "build", "--preset", "quick", "--store", str(folder / "store"),
               "--out", str(folder / "site")]
    subprocess.run(command, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--precision", choices=("float32", "mixed"), default="float32",
                        help="atlasgen's compute precision; the matmul peak is measured in the same one")
    parser.add_argument("--skip-noop", action="store_true", help="skip the no-op rebuild (it first builds the quick atlas)")
    parser.add_argument("--peer-seeds", type=int, default=3,
                        help="tf-keras-vis runs, each from another seed (its random start and input modifiers): "
                             "each image's target is its best activation over them, its time a median run's")
    parser.add_argument("--xplique-filters", type=int, default=4, help="filters per layer for the Xplique comparison")
    parser.add_argument("--xplique-steps", type=int, default=256, help="steps of both MACOs (Xplique's default 256)")
    parser.add_argument("--xplique-crops", type=int, default=None,
                        help="crops per step of both MACOs (default: atlasgen's MacoParams.crops)")
    parser.add_argument("--xplique-size", type=int, default=None, help="image side of both MACOs (default: --size)")
    parser.add_argument("--xplique-box-size", type=float, default=None,
                        help="Xplique's mean crop side as a fraction of the image (default: its 0.5 -> 0.05 schedule)")
    parser.add_argument("--skip-xplique", action="store_true", help="skip the comparison with Xplique's maco")
    args = parser.parse_args()
    filters = list(range(args.filters))
    image_steps = len(filters) * args.steps
    if args.xplique_crops is None:
        from atlasgen.synthesis.maco import MacoParams  # a dataclass; imports no TensorFlow

        args.xplique_crops = MacoParams().crops
    if args.xplique_size is None:
        args.xplique_size = args.size

    print("tf-keras-vis:", flush=True)
    peer = best_of([in_child(run_peer, filters, args.size, args.steps, seed) for seed in range(1, args.peer_seeds + 1)])
    print("atlasgen:", flush=True)
    ours = in_child(run_atlasgen, filters, args.size, args.steps, peer, args.precision)
    peak = in_child(matmul_peak_flops, 4096, 10, args.precision)
    xplique, ours_maco, xplique_skipped = None, None, "--skip-xplique" if args.skip_xplique else None
    if not args.skip_xplique:
        maco_filters = list(range(args.xplique_filters))
        print("Xplique maco:", flush=True)
        xplique = in_child(run_xplique, maco_filters, args.xplique_size, args.xplique_steps, args.xplique_crops,
                           args.xplique_box_size)
        if "error" in xplique:
            xplique_skipped = f"Xplique does not import ({xplique['error']})"
            print(f"skipping the Xplique comparison: {xplique_skipped}", flush=True)
            xplique = None
        else:
            print("atlasgen maco:", flush=True)
            ours_maco = in_child(run_atlasgen_maco, maco_filters, args.xplique_size, args.xplique_steps,
                                 args.xplique_crops, xplique["layers"], args.precision)

    rows, ratios, peer_total, our_total, ttq_total, reached = [], [], 0.0, 0.0, 0.0, True
    peer_where_reached = 0.0
    for layer in LAYERS:
        for kind in KINDS:
            p, o = peer["layers"][layer][kind], ours["layers"][layer][kind]
            peer_total += p["wall_s"]
            our_total += o["wall_s"]
            reached &= o["ttq_steps"] is not None
            if o["ttq_steps"] is not None:
                ttq_total += o["ttq_wall_s"]
                peer_where_reached += p["wall_s"]
            per_image = [a / t for a, t in zip(o["activations"], p["activations"]) if t > 0]
            ratios += per_image
            rows.append({
                "layer": layer, "kind": kind,
                "tf_keras_vis": {"wall_s": round(p["wall_s"], 2), "image_steps_per_s": round(image_steps / p["wall_s"], 2),
                                 "activations": [round(a, 3) for a in p["activations"]]},
                "atlasgen": {"wall_s": round(o["wall_s"], 2), "image_steps_per_s": round(image_steps / o["wall_s"], 2),
                             "batch_size": o["batch_size"], "estimated_activation_mb": o["estimated_activation_mb"] and round(o["estimated_activation_mb"], 1),
                             "activations": [round(a, 3) for a in o["activations"]],
                             "quality_reached_at_steps": o["ttq_steps"],
                             "time_to_quality_s": None if o["ttq_wall_s"] is None else round(o["ttq_wall_s"], 2)},
                "images_higher_than_peer": sum(a > t for a, t in zip(o["activations"], p["activations"])),
            })
            print(json.dumps(rows[-1]), flush=True)
    maco_rows, maco_layers = [], {}
    xplique_total, maco_ttq_total, maco_reached = 0.0, 0.0, None
    if xplique is not None:
        maco_reached = True
        for layer in XPLIQUE_LAYERS:
            x, o = xplique["layers"][layer], ours_maco["layers"][layer]
            xplique_total += x["wall_s"]
            maco_reached &= o["ttq_steps"] is not None
            if o["ttq_steps"] is not None:
                maco_ttq_total += o["ttq_wall_s"]
            maco_rows.append({
                "comparison": "xplique_maco", "layer": layer,
                "xplique": {"wall_s": round(x["wall_s"], 2), "trace_s": round(x["trace_s"], 2),
                            "activations": [round(a, 3) for a in x["activations"]]},
                "atlasgen_maco": {"wall_s": round(o["wall_s"], 2), "batch_size": o["batch_size"],
                                  "activations": [round(a, 3) for a in o["activations"]],
                                  "quality_reached_at_steps": o["ttq_steps"],
                                  "time_to_quality_s": None if o["ttq_wall_s"] is None else round(o["ttq_wall_s"], 2)},
                "images_higher_than_xplique": sum(a > t for a, t in zip(o["activations"], x["activations"])),
            })
            print(json.dumps(maco_rows[-1]), flush=True)
            maco_layers[layer] = {
                "xplique_wall_s": round(x["wall_s"], 2), "atlasgen_maco_wall_s": round(o["wall_s"], 2),
                "atlasgen_maco_time_to_quality_s": None if o["ttq_wall_s"] is None else round(o["ttq_wall_s"], 2),
                "xplique_activations": [round(a, 3) for a in x["activations"]],
                "atlasgen_maco_activations": [round(a, 3) for a in o["activations"]],
            }
    achieved_flops = ours["whole_filter_flops"] / ours["whole_filter_s"]
    summary = {
        "workload": {"layers": LAYERS, "filters": len(filters), "size": args.size, "steps": args.steps,
                     "precision": args.precision},
        # Each image's tf-keras-vis target is its best activation over this many seeds; its time, a median run's.
        "tf_keras_vis_seeds": peer["seeds"],
        "tf_keras_vis_wall_s": round(peer_total, 2),
        "atlasgen_wall_s": round(our_total, 2),
        # Time to quality is defined only where every image of a layer and kind reached the peer's
        # activation within --steps; elsewhere there is no time to compare, and the speedup is null.
        "quality_reached_everywhere": reached,
        "speedup_vs_tf_keras_vis": round(peer_total / ttq_total, 2) if reached else None,
        "speedup_where_quality_reached": round(peer_where_reached / ttq_total, 2) if ttq_total else None,
        "equal_steps_speedup": round(peer_total / our_total, 2),
        "activation_ratio_vs_tf_keras_vis": round(statistics.median(ratios), 2) if ratios else None,
        "images_higher_than_peer": sum(r["images_higher_than_peer"] for r in rows),
        "images": len(rows) * len(filters),
        "peak_rss_mb": {"tf_keras_vis": round(peer["peak_rss_mb"]), "atlasgen": round(ours["peak_rss_mb"])},
        "matmul_gflops": round(peak / 1e9, 1),
        "atlasgen_whole_filter_conv_gflops": round(achieved_flops / 1e9, 1),
        "fraction_of_matmul_peak": round(achieved_flops / peak, 3),
        "noop_rebuild_s": None if args.skip_noop else round(noop_rebuild_s(), 2),
        # Xplique's maco: its total wall time over atlasgen MACO's total time to reach, on every
        # image, the activation Xplique reached; null where atlasgen did not reach it everywhere
        # (or the comparison was skipped).
        "speedup_vs_xplique_maco": round(xplique_total / maco_ttq_total, 2) if maco_reached else None,
        "xplique_quality_reached_everywhere": maco_reached,
        "xplique": None if xplique is None else {
            "workload": {"layers": XPLIQUE_LAYERS, "filters": args.xplique_filters, "size": args.xplique_size,
                         "steps": args.xplique_steps, "crops": args.xplique_crops,
                         "xplique_box_size": args.xplique_box_size or "0.5 -> 0.05"},
            "xplique_wall_s": round(xplique_total, 2),
            "atlasgen_maco_wall_s": round(sum(o["wall_s"] for o in ours_maco["layers"].values()), 2),
            "peak_rss_mb": {"xplique": round(xplique["peak_rss_mb"]), "atlasgen_maco": round(ours_maco["peak_rss_mb"])},
            "layers": maco_layers,
        },
        "xplique_skipped": xplique_skipped,
    }
    summary["targets_met"] = {
        "quality_reached_everywhere": summary["quality_reached_everywhere"] is True,
        "speedup_vs_tf_keras_vis >= 10": (summary["speedup_vs_tf_keras_vis"] or 0) >= 10,
        "activation_ratio_vs_tf_keras_vis >= 1": (summary["activation_ratio_vs_tf_keras_vis"] or 0) >= 1,
        "fraction_of_matmul_peak >= 0.5": summary["fraction_of_matmul_peak"] >= 0.5,
        "speedup_vs_xplique_maco >= 2, every image reached": (summary["speedup_vs_xplique_maco"] or 0) >= 2,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
