"""What the benchmarks share: a function run in a fresh process, and TensorFlow's matmul rate (the
machine's limit the convolution rates are measured against)."""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path


def in_workdir(workdir: str | None, prefix: str, function):
    """`function(folder)` in `workdir`, kept; or, without one, in a temp folder removed after."""
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return function(work)
    finally:
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)


def in_child(function, *args):
    """`function(*args)` in a fresh process: its own TensorFlow, threads and peak memory."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def matmul_peak_flops(n: int = 4096, repeats: int = 10, precision: str = "float32") -> float:
    """TensorFlow's warm n x n matmul FLOP rate in float32, or in bfloat16 for "mixed"."""
    from atlasgen.tf import load

    tf, _ = load()
    dtype = tf.bfloat16 if precision == "mixed" else tf.float32
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    multiply = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))
    multiply(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        multiply(a, b).numpy()
    return 2.0 * n**3 * repeats / (time.perf_counter() - start)
