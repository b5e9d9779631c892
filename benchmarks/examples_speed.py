"""Dataset-example scan speed and memory against the machine's limit (issue 12, item 8; issue 20, item 5).

    python benchmarks/examples_speed.py [--images 200,2000] [--size 224] [--chunk 32]
        [--layers a,b] [--batch-size N] [--examples 9] [--seed 0] [--matmul-size 4096] [--rounds 1]

Corpus: for each --images N, a temporary folder of N distinct images cut from scikit-image's
bundled photos (atlasgen.build.dataset.BUILTIN_PHOTOS; no download): random crops, shorter side 128 to
512 px where the photo allows, in the common photo aspect ratios 1:1, 4:5, 3:4, 2:3 and 9:16,
landscape or portrait, greyscale where the photo is, about 70% saved as JPEG (quality 90) and the
rest as PNG, spread over ten subfolders. The same --seed gives the same corpus. An exact ratio
means every crop of one ratio resizes to the same shape, so the scan can batch them, as it would
batch a folder of camera photos.

Workload: for each N, in fresh child processes (so each peak memory is its own):
- decoding, without the model: hashing every file as `open_dataset` does (read, sha256, header)
  on one core; then the scan's host work per image (`decode_image`: read, hash, decode, EXIF,
  RGB, bicubic resize of the shorter side to --size) on one core, and on `decoding_threads`
  (every core this process may run on, `host_cores`), checking both give the same pixels.
- the scan: the build's own scan path on hed-bsds500's VGG16 trunk: `open_dataset` (hashing every
  file), then `scan_chunks` (threads decode the next chunk while the model runs this one; one
  pre-activation forward pass per batch of equal-shape images for every planned layer, each
  image's per-filter max and argmax and min and argmin, the chunk's top and bottom --examples per
  filter), each chunk's merged into a running top k and bottom k per layer with
  `atlasgen.build.dataset.merge`, as the build merges them. Then, in the same process, the model alone: every chunk decoded first, outside the
  clock, then `scan_decoded` on each (the same images in the same batches, no decoding) and the
  same merges; its examples must equal the scan's. --rounds R repeats the two in turn R times and
  keeps each one's best time (on a shared machine, the rounds least disturbed). Nothing is
  stored. The graph is traced before the clock starts (one --size x --size image).
TensorFlow's float32 matmul rate (--matmul-size square, tf.function, warm, as run.py's
matmul_peak_flops) is measured in a child of its own before and after the scans; the better counts.

Figures (per N, and for the largest N at the top level):
- images_per_s: images scanned over the scan's wall time (`scan_chunks` and the merges; not
  open_dataset, whose hashing is hash_s). model_alone_images_per_s: the same over the model-alone
  run's time; scan_vs_model_alone: the first over the second (the target is >= 0.9: decoding
  hidden behind the model).
- decoding: images_per_s_one_core and images_per_s_all_cores (read, hash, decode and resize),
  their speedup, the cores, and hash_images_per_s_one_core (open_dataset's work per file); each
  the best of 3 passes.
- conv_gflop_per_image: forward FLOPs of the conv layers the scan computes (every conv up to the
  deepest planned layer), 2 * h * w * k * k * cin * cout each, h x w its output map at each
  image's own resized size (atlasgen.model.geometry.receptive_fields); the mean over the corpus. ReLU,
  pooling, the input transform and the max/argmax are not counted.
- conv_gflops: those FLOPs over the scan's wall time; fraction_of_matmul_peak: that over the
  matmul rate (the target is >= 0.5). forward_* are the same over the time inside the forward
  passes alone.
- peak_rss_mb: the scan child's peak resident memory (getrusage ru_maxrss) before the model-alone
  run, model and TensorFlow included; rss_ratio is the largest N's over the smallest N's, and
  flat_memory says whether it is within 15%.
- imagenet_val: ImageNet's validation set (50,000 images, mean about 500 x 375, so about 224 x 299
  at a 224 px shorter side) on this CPU, projected from the measured rates: 50,000 x its FLOPs per
  image over the measured conv FLOP rate, plus hashing at the measured seconds per image (this
  uses the rate measured at --size even when --size is not 224).
- h100_projection: NOT a measurement. One H100 SXM reaching the same forward fraction of its peak
  as this CPU's forward passes do of its matmul rate: its float32 peak (the scan's default, TF32
  disabled) and, under "tf32", its dense TF32 tensor-core peak (--precision mixed); beside the
  convolutions, decoding on H100_HOST_CORES (16) host cores at the per-core rate measured here;
  before them, hashing every file at the per-core rate measured here on as many cores. Its
  assumptions are in the JSON.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from machine import in_child, matmul_peak_flops

# (shorter, longer) side ratios of common photos; each crop is this ratio exactly.
RATIOS = ((1, 1), (4, 5), (3, 4), (2, 3), (9, 16))
MIN_SHORT, MAX_SHORT = 128, 512
JPEG_SHARE = 0.7
SUBFOLDERS = 10
FLAT_WITHIN = 0.15
TARGET_FRACTION = 0.5
IMAGENET_VAL = {"images": 50_000, "mean_source_hw": [375, 500], "short_side": 224}
# H100 SXM5 dense (no sparsity) peaks, NVIDIA's datasheet figures: float32 on the CUDA cores, TF32
# and bf16 on the tensor cores.
H100_DENSE_PEAK = {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12}
# Host cores the H100 projection assumes decode beside the GPU: the H100 machine this project borrows has 16.
H100_HOST_CORES = 16
# The scan's images per second over the model's alone on the same images decoded beforehand.
TARGET_SCAN_VS_MODEL = 0.9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_corpus(folder: Path, count: int, seed: int) -> dict:
    """`count` distinct crops of the bundled photos in `folder`; returns what was written."""
    import numpy as np
    from PIL import Image

    from atlasgen.build.dataset import BUILTIN_PHOTOS
    from atlasgen.synthesis.probes import skimage_data

    photos = []
    for name in BUILTIN_PHOTOS:
        with Image.open(skimage_data(name)) as opened:
            image = opened.convert("L") if opened.mode in ("L", "I", "I;16", "1") else opened.convert("RGB")
        photos.append((name, image))
    rng = np.random.default_rng(seed)
    seen, formats = set(), {"jpeg": 0, "png": 0}
    for sub in range(SUBFOLDERS):
        (folder / f"d{sub}").mkdir(parents=True, exist_ok=True)
    while len(seen) < count:
        name, image = photos[rng.integers(len(photos))]
        short_ratio, long_ratio = RATIOS[rng.integers(len(RATIOS))]
        portrait = bool(rng.integers(2))
        width, height = image.size
        ratio_w, ratio_h = (short_ratio, long_ratio) if portrait else (long_ratio, short_ratio)
        low = -(-MIN_SHORT // short_ratio)
        high = min(MAX_SHORT // short_ratio, width // ratio_w, height // ratio_h)
        if high < low:
            continue  # this photo is too small for this ratio and orientation
        unit = int(rng.integers(low, high + 1))
        w, h = ratio_w * unit, ratio_h * unit
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        key = (name, left, top, w, h)
        if key in seen:
            continue
        crop = image.crop((left, top, left + w, top + h))
        index = len(seen)
        stem = folder / f"d{index % SUBFOLDERS}" / f"crop{index:05d}"
        if rng.random() < JPEG_SHARE:
            crop.save(f"{stem}.jpg", quality=90)
            formats["jpeg"] += 1
        else:
            crop.save(f"{stem}.png")
            formats["png"] += 1
        seen.add(key)
    return {"images": count, **formats}


def conv_flops(model, computed: list[str], hw: tuple[int, int]) -> float:
    """Forward FLOPs of the named conv layers for one image of hw pixels: 2 h w k k cin cout each."""
    from atlasgen.model.geometry import receptive_fields
    from atlasgen.model.graph import spatial_ops

    fields = receptive_fields(spatial_ops(model), hw)
    total = 0.0
    for name in computed:
        kernel = model.get_layer(name).kernel.shape
        h, w = fields[name].size
        total += 2.0 * h * w * kernel[0] * kernel[1] * kernel[2] * kernel[3]
    return total


def computed_convs(model, layers: list[str]) -> list[str]:
    """Every conv the scan's forward pass computes: those up to the deepest planned layer."""
    from atlasgen.model.graph import conv_layers

    names = [c.name for c in conv_layers(model)]
    return names[: max(names.index(layer) for layer in layers) + 1]


def merged(running: list, tops: list, part, index: dict) -> list:
    """The running top k and bottom k of every layer (`Ranked`) with one chunk's merged in, as the
    build merges them."""
    from atlasgen.build.dataset import Ranked, merge, to_global

    digests = [image.digest for image in part]
    return [r if chunk is None else Ranked(merge(r.top, to_global(chunk.top, digests, index)),
                                           merge(r.bottom, to_global(chunk.bottom, digests, index), lowest=True))
            for r, chunk in zip(running, tops)]


def scan_once(scanner, chunks: list, size: int, examples: int, batch: int, index: dict, every: dict,
              layers: list[str]) -> tuple[float, list, list, int]:
    """The build's scan path over every chunk (`scan_chunks`) and the merges: its seconds, the
    running tops, every scanned image's size and the images skipped."""
    from atlasgen.build.dataset import Ranked, scan_chunks

    running = [Ranked.empty(every[layer], examples) for layer in layers]
    sizes: list[tuple[int, int]] = []
    skipped = 0
    start = time.perf_counter()
    for part, (tops, facts, changed) in zip(chunks, scan_chunks(scanner, chunks, size, examples, batch)):
        assert changed is None, changed
        running = merged(running, tops, part, index)
        sizes += [tuple(s) for s in facts["sizes"] if s is not None]
        skipped += len(facts["skipped"])
    return time.perf_counter() - start, running, sizes, skipped


def alone_once(scanner, chunks: list, decoded: list, size: int, examples: int, batch: int, index: dict, every: dict,
               layers: list[str]) -> tuple[float, list]:
    """The model alone on the chunks decoded beforehand (`scan_decoded`: the same batches) and the
    same merges: its seconds and the running tops."""
    from atlasgen.build.dataset import Ranked, scan_decoded

    alone = [Ranked.empty(every[layer], examples) for layer in layers]
    start = time.perf_counter()
    for part, chunk_decoded in zip(chunks, decoded):
        tops, _ = scan_decoded(scanner, chunk_decoded, size, examples, batch)
        alone = merged(alone, tops, part, index)
    return time.perf_counter() - start, alone


def scan_run(folder: str, size: int, chunk: int, layers: list[str] | None, batch_size: int | None, examples: int,
             rounds: int = 1) -> dict:
    """One corpus through the build's scan path (`scan_chunks`: the next chunk decoded in threads
    while the model runs this one), then the model alone on the same chunks decoded beforehand (the
    same batches, no decoding), `rounds` times in turn; the figures of this process, each time the
    best of its rounds."""
    import numpy as np

    from atlasgen.build.dataset import Scanner, decode_chunk, open_dataset, scan_batch_size
    from atlasgen.model.graph import conv_layers
    from atlasgen.model.layers import model_geometry
    from atlasgen.model.weights import load_model

    loaded = load_model("hed-bsds500")
    every = {c.name: c.filters for c in conv_layers(loaded.model)}
    layers = layers or list(every)
    computed = computed_convs(loaded.model, layers)
    batch = batch_size or scan_batch_size(model_geometry(loaded), layers, size)
    scanner = Scanner(loaded, layers)
    scanner.peaks(np.zeros((1, size, size, 3), np.uint8))  # trace outside the clock

    forward = {"s": 0.0, "passes": 0}
    inner = scanner.peaks

    def timed(images):
        start = time.perf_counter()
        out = inner(images)
        forward["s"] += time.perf_counter() - start
        forward["passes"] += 1
        return out

    scanner.peaks = timed  # the same forward pass, its time counted apart from the host work

    start = time.perf_counter()
    dataset = open_dataset(Path(folder), short_side=size, examples=examples, chunk=chunk)
    hash_s = time.perf_counter() - start
    index, chunks = dataset.index(), dataset.chunks
    scans, alones, decoded, rss, same = [], [], None, None, True
    for _ in range(rounds):
        forward.update(s=0.0, passes=0)
        scan_s, running, sizes, skipped = scan_once(scanner, chunks, size, examples, batch, index, every, layers)
        scans.append((scan_s, forward["s"], forward["passes"]))
        if decoded is None:
            rss = peak_rss_mb()  # before the model-alone run holds every image decoded
            decoded = [decode_chunk(part, size) for part in chunks]  # outside the clock
        model_s, alone = alone_once(scanner, chunks, decoded, size, examples, batch, index, every, layers)
        alones.append(model_s)
        same = same and all(np.array_equal(a.activation, b.activation) and np.array_equal(a.image, b.image)
                            and np.array_equal(a.unit, b.unit)
                            for ranks, others in zip(running, alone) for a, b in zip(ranks, others))
    scan_s, forward_s, passes = min(scans)

    by_shape: dict[tuple[int, int], float] = {}
    flops = 0.0
    for hw in sizes:
        if hw not in by_shape:
            by_shape[hw] = conv_flops(loaded.model, computed, hw)
        flops += by_shape[hw]
    return {
        "images": len(dataset.images), "refused": len(dataset.refused), "scanned": len(sizes), "skipped": skipped,
        "chunks": len(chunks), "batch_size": batch, "forward_passes": passes, "shapes": len(by_shape),
        "hash_s": hash_s, "scan_s": scan_s, "forward_s": forward_s, "flops": flops,
        "model_alone_s": min(alones), "same_examples": same,
        "rounds": {"scan_s": [round(s[0], 3) for s in scans], "model_alone_s": [round(s, 3) for s in alones]},
        "mean_hw": [float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))] if sizes else None,
        "examples_held": sum(int((ranks.top.image >= 0).sum()) for ranks in running), "peak_rss_mb": rss,
        "layers": layers, "computed": computed,
    }


def decode_run(folder: str, size: int, repeats: int = 3) -> dict:
    """The host's work per image without the model, each the best of `repeats` passes: hashing as
    `open_dataset` does it (read, sha256, header) and the scan's read, hash, decode and resize
    (`decode_image`), each on one core, and the latter on `decoding_threads` (every core this
    process may use), checking that both give the same pixels."""
    import hashlib

    from atlasgen.build.dataset import decode_image, decoding_threads, host_cores, open_dataset, read_file
    from atlasgen.codec import header_size

    images = open_dataset(Path(folder), short_side=size).images
    cores = host_cores()
    times = {"hash": [], "serial": [], "pool": []}
    for _ in range(repeats):
        start = time.perf_counter()
        for image in images:
            data = read_file(image.path)
            hashlib.sha256(data).hexdigest()
            header_size(data)
        times["hash"].append(time.perf_counter() - start)
        start = time.perf_counter()
        serial = [decode_image(image, size) for image in images]
        times["serial"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with decoding_threads(cores) as pool:
            threaded = list(pool.map(decode_image, images, [size] * len(images)))
        times["pool"].append(time.perf_counter() - start)
    same = all((a == b) if isinstance(a, str) else (a.tobytes() == b.tobytes()) for a, b in zip(serial, threaded))
    n, best = len(images), {key: min(values) for key, values in times.items()}
    return {"images": n, "cores": cores, "hash_images_per_s_one_core": n / best["hash"],
            "images_per_s_one_core": n / best["serial"], "images_per_s_all_cores": n / best["pool"],
            "speedup": best["serial"] / best["pool"], "same_pixels": same}


def imagenet_flops(layers: list[str] | None) -> tuple[list[int], float]:
    """The resized ImageNet validation image's shape and its conv FLOPs through the scan."""
    from atlasgen.model.graph import conv_layers
    from atlasgen.model.weights import load_model

    loaded = load_model("hed-bsds500")
    layers = layers or [c.name for c in conv_layers(loaded.model)]
    short = IMAGENET_VAL["short_side"]
    h, w = IMAGENET_VAL["mean_source_hw"]
    hw = (short, round(w * short / h))
    return list(hw), conv_flops(loaded.model, computed_convs(loaded.model, layers), hw)


def check_layers(layers: list[str] | None) -> None:
    from atlasgen.model.graph import conv_layers
    from atlasgen.model.weights import load_model

    if layers is None:
        return
    names = [c.name for c in conv_layers(load_model("hed-bsds500").model)]
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        raise SystemExit(f"--layers: {', '.join(unknown)} not among {', '.join(names)}")


def h100_projection(n: int, image_flops: float, forward_fraction: float, decoding: dict) -> dict:
    """ImageNet val on one H100 (NOT a measurement): its convolutions at its float32 (the scan's
    default: TF32 disabled) or dense TF32 peak (--precision mixed) times the forward fraction measured
    here; decoding on H100_HOST_CORES at the per-core rate measured here, beside the convolutions
    (the scan decodes the next chunk while the model runs); hashing (open_dataset) before, likewise."""
    cores = H100_HOST_CORES
    decode_s = n / (decoding["images_per_s_one_core"] * cores)
    hash_s = n / (decoding["hash_images_per_s_one_core"] * cores)

    def at(peak: float) -> dict:
        compute_s = n * image_flops / (forward_fraction * peak) if forward_fraction else None
        if compute_s is None:
            return {"compute_s": None, "projected_s": None, "bound_by": None}
        return {"compute_s": round(compute_s, 1), "projected_s": round(hash_s + max(compute_s, decode_s), 1),
                "bound_by": "the model" if compute_s >= decode_s else "the host"}

    exact = at(H100_DENSE_PEAK["fp32"])
    return {
        "measured": False,
        "assumptions": {
            "peak": "H100 SXM: 66.9 TFLOP/s float32 (the scan's default: TF32 disabled, exact); 494.7 TFLOP/s "
                    "dense TF32 (--precision mixed lets the scan use TF32)",
            "fraction_of_peak": "the forward fraction of matmul peak measured here on this CPU",
            "host": f"{cores} host cores (the H100 machine this project borrows has 16) at this CPU's measured "
                    f"per-core rates, scaling linearly: read, hash, decode and resize beside the convolutions "
                    f"(the next chunk decodes while the model runs this one); hashing every file first (open_dataset)",
            "not_counted": "the store's writes of each chunk's entries",
        },
        "host_cores": cores,
        "fraction_of_peak": round(forward_fraction, 3),
        "decode_s": round(decode_s, 1), "hash_s": round(hash_s, 1),
        **exact,
        "tf32": at(H100_DENSE_PEAK["tf32"]),
    }


def row_of(run: dict, peak: float) -> dict:
    """One corpus's figures, from its runs and the matmul rate."""
    scanned = max(run["scanned"], 1)
    rate = run["flops"] / run["scan_s"] if run["scan_s"] else 0.0
    forward_rate = run["flops"] / run["forward_s"] if run["forward_s"] else 0.0
    return {
        "images": run["corpus"]["images"], "scanned": run["scanned"], "skipped": run["skipped"],
        "refused": run["refused"], "jpeg": run["corpus"]["jpeg"], "png": run["corpus"]["png"],
        "chunks": run["chunks"], "batch_size": run["batch_size"], "forward_passes": run["forward_passes"],
        "distinct_shapes": run["shapes"], "mean_resized_hw": run["mean_hw"] and [round(v, 1) for v in run["mean_hw"]],
        "hash_s": round(run["hash_s"], 3), "scan_s": round(run["scan_s"], 3), "forward_s": round(run["forward_s"], 3),
        "images_per_s": round(run["scanned"] / run["scan_s"], 3) if run["scan_s"] else None,
        "forward_images_per_s": round(run["scanned"] / run["forward_s"], 3) if run["forward_s"] else None,
        "conv_gflop_per_image": round(run["flops"] / scanned / 1e9, 3),
        "conv_gflops": round(rate / 1e9, 2), "fraction_of_matmul_peak": round(rate / peak, 3),
        "forward_conv_gflops": round(forward_rate / 1e9, 2),
        "forward_fraction_of_matmul_peak": round(forward_rate / peak, 3),
        "host_s_per_image": round((run["scan_s"] - run["forward_s"]) / scanned, 5),
        "hash_s_per_image": round(run["hash_s"] / scanned, 5),
        "model_alone_s": round(run["model_alone_s"], 3),
        "model_alone_images_per_s": round(run["scanned"] / run["model_alone_s"], 3) if run["model_alone_s"] else None,
        "scan_vs_model_alone": round(run["model_alone_s"] / run["scan_s"], 3) if run["scan_s"] else None,
        "same_examples": run["same_examples"], "rounds": run["rounds"],
        "decoding": {key: round(value, 2) if isinstance(value, float) else value
                     for key, value in run["decoding"].items()},
        "examples_held": run["examples_held"], "peak_rss_mb": round(run["peak_rss_mb"], 1),
    }


def counts(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give image counts such as 200,2000")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=counts, default=[200, 2000], help="corpus sizes, comma separated")
    parser.add_argument("--size", type=int, default=224, help="shorter side the images are resized to")
    parser.add_argument("--chunk", type=int, default=32, help="images per chunk on average (--dataset-chunk)")
    parser.add_argument("--layers", default=None, help="planned layers, comma separated (default: all 13 conv layers)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per forward pass (default: atlasgen.build.dataset.scan_batch_size)")
    parser.add_argument("--examples", type=int, default=9, help="top k per filter")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--matmul-size", type=int, default=4096, help="side of the square matmuls of the peak")
    parser.add_argument("--rounds", type=int, default=1,
                        help="scan, then model alone, this many times in turn; each time is the best of its rounds")
    args = parser.parse_args()
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()] if args.layers else None
    in_child(check_layers, layers)

    # The machine's limit: the better of two measurements, before and after the scans (a shared
    # machine may be busy at one of them).
    peak = in_child(matmul_peak_flops, args.matmul_size, 10)
    imagenet_hw, imagenet_image_flops = in_child(imagenet_flops, layers)
    runs = []
    for count in args.images:
        with tempfile.TemporaryDirectory(prefix="atlas-examples-") as folder:
            corpus = make_corpus(Path(folder), count, args.seed)
            print(f"{count} images ({corpus['jpeg']} JPEG, {corpus['png']} PNG): decoding, then scanning", flush=True)
            decoding = in_child(decode_run, folder, args.size)
            run = in_child(scan_run, folder, args.size, args.chunk, layers, args.batch_size, args.examples, args.rounds)
        run["corpus"], run["decoding"] = corpus, decoding
        runs.append(run)
        print(json.dumps(row_of(run, peak)), flush=True)
    peak = max(peak, in_child(matmul_peak_flops, args.matmul_size, 10))
    rows = [row_of(run, peak) for run in runs]

    small = min(zip(args.images, runs, rows), key=lambda item: item[0])
    large = max(zip(args.images, runs, rows), key=lambda item: item[0])
    _, run, row = large
    rss_ratio = large[2]["peak_rss_mb"] / small[2]["peak_rss_mb"]
    scanned = max(run["scanned"], 1)
    rate = run["flops"] / run["scan_s"]
    forward_fraction = run["flops"] / run["forward_s"] / peak if run["forward_s"] else 0.0
    n = IMAGENET_VAL["images"]
    cpu_s = n * (imagenet_image_flops / rate + run["hash_s"] / scanned)
    decoding = run["decoding"]
    h100 = h100_projection(n, imagenet_image_flops, forward_fraction, decoding)
    ratio = row["scan_vs_model_alone"]
    summary = {
        "workload": {"model": "VGG16 trunk, hed-bsds500 weights", "layers": run["layers"],
                     "convs_computed": len(run["computed"]), "size": args.size, "chunk": args.chunk,
                     "batch_size": row["batch_size"], "examples": args.examples, "seed": args.seed,
                     "images": args.images, "ratios": [f"{s}:{l}" for s, l in RATIOS],
                     "matmul_size": args.matmul_size, "rounds": args.rounds},
        "runs": rows,
        "images_per_s": row["images_per_s"],
        "model_alone_images_per_s": row["model_alone_images_per_s"],
        "decoding": row["decoding"],
        "same_examples": row["same_examples"],
        "conv_gflop_per_image": row["conv_gflop_per_image"],
        "conv_gflops": row["conv_gflops"],
        "matmul_gflops": round(peak / 1e9, 2),
        "fraction_of_matmul_peak": row["fraction_of_matmul_peak"],
        "forward_fraction_of_matmul_peak": row["forward_fraction_of_matmul_peak"],
        "target_fraction": TARGET_FRACTION,
        "meets_target": row["fraction_of_matmul_peak"] >= TARGET_FRACTION,
        "peak_rss_mb": {str(count): r["peak_rss_mb"] for count, r in zip(args.images, rows)},
        "rss_ratio": round(rss_ratio, 3),
        "flat_memory": abs(rss_ratio - 1.0) <= FLAT_WITHIN,
        "imagenet_val": {
            "images": n, "resized_hw": imagenet_hw, "conv_gflop_per_image": round(imagenet_image_flops / 1e9, 3),
            "cpu_projected_s": round(cpu_s, 1), "cpu_projected_h": round(cpu_s / 3600, 2),
            "basis": f"this CPU's measured scan conv FLOP rate at {args.size} px on {large[0]} images, plus hashing",
        },
        "h100_projection": h100,
        "scan_vs_model_alone_target": TARGET_SCAN_VS_MODEL,
        "meets_scan_vs_model_alone": ratio is not None and ratio >= TARGET_SCAN_VS_MODEL,
        "scan_vs_model_alone": ratio,
    }
    print(f"PROJECTION, not a measurement: ImageNet val on one H100 with {H100_HOST_CORES} host cores ~ "
          f"{h100['projected_s']} s in float32 (convolutions {h100['compute_s']} s, decoding {h100['decode_s']} s "
          f"beside them, hashing {h100['hash_s']} s before), {h100['tf32']['projected_s']} s with --precision mixed "
          f"(TF32)", flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
