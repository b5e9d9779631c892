"""Dataset examples: every filter's top-activating units on a folder of real images (and its
bottom ones, the most negative), and exactly what each of those units saw.

The convention (recorded in atlas.json): each image is shown as a viewer sees it (its EXIF
orientation applied, then PIL's `convert("RGB")`), its shorter side resized to `short_side` with
PIL bicubic (the longer side `round(long * short_side / short)`), and fed whole. A filter's
examples are its top k units by pre-ReLU activation, at most one unit per image: each image's best
unit for the filter competes with the other images' best.

The scan goes in chunks: content-defined runs of the folder's images in path order. A chunk ends
after an image whose content hash says so, so adding or removing an image changes only the chunk
it is in (and splits or joins it at most). A chunk's top k for every filter of a layer is one
store entry (its blobs "top" and "bottom", from the same forward passes), keyed by the images'
content hashes, the model, the weights, the convention and the algorithm version: a killed scan
resumes from the chunks already stored, and merging chunks is exact, so shards may scan different
chunks. A filter's negative examples are its bottom k, the same way: each image's lowest unit.

Threads read, hash, decode and resize the next chunk's images while the model runs this one
(`scan_chunks`), to exactly the serial scan's result. On a GPU the scan disables TF32 unless asked
(`scan_precision`), and each chunk's facts say the precision it was scanned in.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from PIL import Image

from atlasgen.codec import MAX_IMAGE_BYTES, WEBP_MAX_SIDE, Undecodable, decode_rgb, header_size
from atlasgen.errors import AtlasgenError
from atlasgen.names import display_name
from atlasgen.fs import read_regular

#: What the scan reads, by extension, in any case; other files are ignored.
EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
#: Images per chunk, on average; a chunk is cut at MAX_CHUNK_FACTOR times that whatever the hashes say.
DEFAULT_CHUNK = 32
MAX_CHUNK_FACTOR = 4
DEFAULT_SHORT_SIDE = 224
DEFAULT_EXAMPLES = 9
MAX_EXAMPLES = 100
#: A folder deeper than this is not walked further (a guard against pathological trees).
MAX_DEPTH = 64
#: Example crops smaller than this are enlarged (nearest neighbour) so a 3 px field can be seen.
EXAMPLE_DISPLAY = 96
#: Decoded images kept while cropping one layer's examples (the same photos recur across filters).
CROP_CACHE = 64

#: The resize convention of dataset images, by name, in every chunk's recipe; a new convention gets a new name.
DATASET_CONVENTION = "exif-rgb-bicubic-shorter-side"
CONVENTION = {
    "orientation": "EXIF orientation applied",
    "colour": "PIL convert('RGB'): greyscale, palette and CMYK converted, alpha dropped",
    "resize": "shorter side to short_side with PIL bicubic; longer side round(long * short_side / short)",
    "crop": "none: the whole image is fed",
    "examples": "top units by pre-ReLU activation, at most one per image",
    "negative_examples": "bottom units by pre-ReLU activation (lowest first), at most one per image",
}

# scikit-image's bundled photographs (no download needed): the offline corpus when no --dataset is given.
BUILTIN_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
    "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
)
BUILTIN_NAME = "scikit-image photos"


class Unreadable(Exception):
    """An image file the scan skips; the message is the reason atlas.json lists."""


class Changed(Exception):
    """An image file that no longer reads as it was hashed (changed, moved or removed while the build
    ran): a fact of the moment, not of its content, so the chunk it is in is not stored."""


@dataclass(frozen=True)
class SourceImage:
    source: str  # the path relative to the dataset folder, '/' separators, as `display_name` shows it
    path: Path  # the real path, to read it (any bytes the OS allows)
    digest: str  # sha256 of the file's bytes
    size: tuple[int, int] | None = None  # (width, height) as its header says; None when Pillow cannot tell


@dataclass(frozen=True)
class Dataset:
    """The images of a folder, each content once, in path order, and what was refused before reading."""

    name: str
    root: Path
    images: tuple[SourceImage, ...]
    refused: tuple[tuple[str, str], ...]  # (source, reason): not regular files, empty, too big, duplicates
    short_side: int
    examples: int
    chunk: int  # images per chunk on average
    builtin: bool = False
    # Whether the scan may let a GPU run its float32 convolutions as TF32 (an explicit --precision
    # mixed); otherwise it disables TF32 while it runs, so its examples are exact (`scan_precision`).
    tf32: bool = False

    @property
    def sha256(self) -> str:
        """A hash of what was scanned: every image's content and its path."""
        lines = "".join(f"{image.digest} {image.source}\n" for image in self.images)
        return hashlib.sha256(f"{self.short_side}\n{lines}".encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def chunks(self) -> list[tuple[SourceImage, ...]]:
        return chunk_images(self.images, self.chunk)

    def index(self) -> dict[str, int]:
        """Content digest -> position in `images`: an image's global id, which breaks ties between equal activations."""
        return {image.digest: i for i, image in enumerate(self.images)}

    def capped(self, cap: "SizeCap") -> "Dataset":
        """The dataset without the images that `cap` refuses by their header size (before a pixel is
        decoded); they join `refused` with the reason. None left is an error."""
        kept, refused = [], []
        for image in self.images:
            reason = cap.refusal(*image.size) if image.size else None
            if reason:
                refused.append((image.source, reason))
            else:
                kept.append(image)
        if not refused:
            return self
        if not kept:
            raise AtlasgenError(f"--dataset {display_name(str(self.root))} has no image that fits after the resize "
                                f"({refused[0][0]}: {refused[0][1]}); give photos of ordinary shapes")
        return replace(self, images=tuple(kept), refused=self.refused + tuple(refused))


@dataclass(frozen=True)
class SizeCap:
    """What a dataset image may become once resized to `short_side`: at most WEBP_MAX_SIDE pixels a
    side (its photo is published as WebP) and, given the model's geometry, at most `memory` bytes of
    activations up to `layer` (the first planned layer: `ModelGeometry.activation_bytes`) for one image."""

    short_side: int
    geometry: object = None  # atlasgen.model.layers.ModelGeometry
    layer: str | None = None
    memory: int = 0

    def refusal(self, width: int, height: int) -> str | None:
        """Why an image of `width` x `height` pixels (as its header says) is not scanned; None if it fits."""
        w, h = resized_size(width, height, self.short_side)
        if max(w, h) > WEBP_MAX_SIDE:
            return f"{width}x{height} px, resized to {w}x{h}: over WebP's limit of {WEBP_MAX_SIDE} px a side"
        if self.geometry is None:
            return None
        square = self.geometry.activation_bytes(self.layer, self.short_side)
        if square * w * h < self.memory * self.short_side ** 2 // 2:
            return None  # far under the cap: the exact count (a geometry walk at this size) is not needed
        need = self.geometry.activation_bytes(self.layer, (h, w))
        if need <= self.memory:
            return None
        return (f"{width}x{height} px, resized to {w}x{h}: needs about {need / 2**30:.1f} GiB at {self.layer}, over "
                f"the {self.memory / 2**30:.1f} GiB available; a smaller --dataset-size admits it")


def chunk_images(images: Iterable[SourceImage], target: int) -> list[tuple[SourceImage, ...]]:
    """Content-defined chunks: a chunk ends after an image whose digest is 0 modulo `target`, or at
    MAX_CHUNK_FACTOR * target images. An image added or removed changes only its own chunk, which
    it may split or join with the next."""
    chunks, current = [], []
    for image in images:
        current.append(image)
        if int(image.digest[:12], 16) % target == 0 or len(current) >= MAX_CHUNK_FACTOR * target:
            chunks.append(tuple(current))
            current = []
    if current:
        chunks.append(tuple(current))
    return chunks


def check_options(short_side, examples, chunk) -> None:
    """Every value as given: zero, negative or absurd is an error, never the default."""
    for option, value, low, high in (("--dataset-size", short_side, 16, 4096), ("--examples", examples, 1, MAX_EXAMPLES),
                                     ("--dataset-chunk", chunk, 1, 100_000)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise AtlasgenError(f"{option} {value!r} is out of range; give a whole number from {low} to {high}")


def open_dataset(folder: Path | None, short_side: int = DEFAULT_SHORT_SIDE, examples: int = DEFAULT_EXAMPLES,
                 chunk: int = DEFAULT_CHUNK, tf32: bool = False) -> Dataset:
    """The image files under `folder`, recursively (links are not followed), hashed; or, with no
    folder, scikit-image's bundled photos. A missing folder, or one without any image file, is an
    error. `tf32`: the scan may use TF32 on a GPU (`Dataset.tf32`)."""
    check_options(short_side, examples, chunk)
    if folder is None:
        return replace(_builtin(short_side, examples, chunk), tf32=tf32)
    if not str(folder).strip():
        raise AtlasgenError("--dataset is empty; give a folder of images")
    try:
        info = os.lstat(folder)
    except OSError:
        raise AtlasgenError(f"--dataset {folder} does not exist; give a folder of images") from None
    if stat.S_ISLNK(info.st_mode):
        # A link given on the command line is the user's own choice; the links inside are not followed.
        try:
            info = os.stat(folder)
        except OSError:
            raise AtlasgenError(f"--dataset {folder} is a broken link; give a folder of images") from None
    if not stat.S_ISDIR(info.st_mode):
        raise AtlasgenError(f"--dataset {folder} is not a folder; give a folder of images")
    found = sorted(_image_files(Path(folder)), key=lambda item: os.fsencode(item[0]))  # by bytes: any name sorts
    if not found:
        raise AtlasgenError(
            f"--dataset {folder} has no image files ({', '.join(sorted(EXTENSIONS))}, in any case); give a folder of photos"
        )
    opened = _hashed(display_name(Path(folder).name or str(folder)), Path(folder), found, short_side, examples, chunk)
    _check_one_readable(opened, folder)
    return replace(opened, tf32=tf32)


def _check_one_readable(opened: Dataset, folder: Path) -> None:
    """Fails early, before anything is computed, when not one image of the folder can be read."""
    reasons = [reason for _, reason in opened.refused]
    for image in opened.images:
        try:
            load_image(read_file(image.path), 16)
            return
        except Unreadable as exc:
            reasons.append(str(exc))
    raise AtlasgenError(f"--dataset {folder} has no readable image ({len(reasons)} image files: {reasons[0]}); "
                        f"give a folder of photos")


def _builtin(short_side: int, examples: int, chunk: int) -> Dataset:
    from atlasgen.synthesis.probes import skimage_data

    found = [(name, skimage_data(name)) for name in BUILTIN_PHOTOS]
    return _hashed(BUILTIN_NAME, found[0][1].parent, sorted(found), short_side, examples, chunk, builtin=True)


def _image_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative source, path) of every file with an image extension under root; never through a link to a folder."""
    stack = [(root, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as exc:
            raise AtlasgenError(f"--dataset folder {folder} cannot be read ({exc.strerror}); check its permissions") from None
        for entry in listed:
            source = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH:
                    stack.append((Path(entry.path), source + "/", depth + 1))
            elif os.path.splitext(entry.name)[1].lower() in EXTENSIONS:
                yield source, Path(entry.path)


def _hashed(name: str, root: Path, found: list[tuple[str, Path]], short_side: int, examples: int, chunk: int,
            builtin: bool = False) -> Dataset:
    """Every file read and hashed by `decoding_threads` (in order), then each content kept once."""
    images, refused, first = [], [], {}
    with decoding_threads(bomb_warning="ignore") as pool:  # header_size ignores Pillow's bomb warning
        for (listed, path), facts in zip(found, pool.map(_file_facts, [path for _, path in found])):
            source = display_name(listed)
            if isinstance(facts, str):
                refused.append((source, facts))
                continue
            digest, size = facts
            if digest in first:
                refused.append((source, f"the same bytes as {first[digest]}"))
                continue
            first[digest] = source
            images.append(SourceImage(source, path, digest, size))
    return Dataset(name, root, tuple(images), tuple(refused), short_side, examples, chunk, builtin)


def _file_facts(path: Path) -> tuple[str, tuple[int, int] | None] | str:
    """A file's sha256 and its header's size; or why it cannot be read (Unreadable's message)."""
    try:
        data = read_file(path)
    except Unreadable as exc:
        return str(exc)
    return hashlib.sha256(data).hexdigest(), header_size(data)


def host_cores() -> int:
    """The cores this process may run on (its CPU affinity; all the machine's where the OS cannot tell)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def decoding_threads(workers: int | None = None, bomb_warning: str = "error") -> Iterator[ThreadPoolExecutor]:
    """A pool of `workers` threads (default: `host_cores`) that read, hash, decode and resize images:
    file reads, hashlib, Pillow's decoders and its resize release the GIL, so they run on every core.

    `warnings.catch_warnings`, which the codec puts around Pillow, is not thread-safe: each thread puts
    back the filter list it saved. So the filter the workers set (`bomb_warning` for Pillow's
    DecompressionBombWarning: "error" in `decode_rgb`, "ignore" in `header_size`) is set first here,
    and every worker saves and restores the same list. Pillow's plugins are registered before any
    thread starts. Tasks not started when the pool closes are cancelled."""
    Image.init()
    with warnings.catch_warnings():
        warnings.simplefilter(bomb_warning, Image.DecompressionBombWarning)
        pool = ThreadPoolExecutor(workers or host_cores(), thread_name_prefix="atlasgen-decode")
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def read_file(path: Path) -> bytes:
    """The bytes of a regular file (never a link, a FIFO or a device) of at most MAX_IMAGE_BYTES."""
    try:
        data = read_regular(path, MAX_IMAGE_BYTES)
    except OSError as exc:
        if exc.errno == 40 or os.path.islink(path):  # ELOOP: O_NOFOLLOW met a link
            raise Unreadable("a symbolic link (links are not followed)") from None
        raise Unreadable(exc.strerror or str(exc)) from None
    if not data:
        raise Unreadable("an empty file")
    return data


def load_image(data: bytes, short_side: int) -> np.ndarray:
    """An image file's bytes as the scan sees them: uint8 (h, w, 3), by the convention above."""
    def check(width: int, height: int) -> None:  # from the header, before a pixel is decoded
        reason = SizeCap(short_side).refusal(width, height)
        if reason:
            raise Undecodable(reason)

    try:
        image = decode_rgb(data, exif=True, check=check)
    except Undecodable as exc:
        raise Unreadable(str(exc)) from None
    return np.asarray(resized(image, short_side))


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) of an image once its shorter side is `short_side`: the convention's resize."""
    short = min(width, height)
    return (short_side, round(height * short_side / short)) if width == short else (round(width * short_side / short), short_side)


def resized(image: Image.Image, short_side: int) -> Image.Image:
    return image.resize(resized_size(*image.size, short_side), Image.BICUBIC)


# --- the scan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Top:
    """Top k per filter (or bottom k: the k lowest, lowest first): activation (filters, k), image id
    (filters, k; -1 where there are fewer than k images) and unit (filters, k, 2) as (y, x). Image
    ids are chunk positions or, once merged, global ids (`Dataset.index`)."""

    activation: np.ndarray
    image: np.ndarray
    unit: np.ndarray

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, activation=self.activation, image=self.image, unit=self.unit)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Top":
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(arrays["activation"], arrays["image"], arrays["unit"])

    @classmethod
    def empty(cls, filters: int, k: int, lowest: bool = False) -> "Top":
        """No images yet: every activation the worst there is (-inf; +inf for a bottom k)."""
        return cls(np.full((filters, k), np.inf if lowest else -np.inf, np.float32), np.full((filters, k), -1, np.int64),
                   np.zeros((filters, k, 2), np.int32))


class Ranked(NamedTuple):
    """A layer's scan of one chunk: its top k and its bottom k per filter, each stored as the chunk
    entry's blob of the same name."""

    top: Top
    bottom: Top

    @classmethod
    def empty(cls, filters: int, k: int) -> "Ranked":
        return cls(Top.empty(filters, k), Top.empty(filters, k, lowest=True))

    def blobs(self) -> dict[str, bytes]:
        """The chunk entry's blobs: "top" and "bottom"."""
        return {"top": self.top.to_bytes(), "bottom": self.bottom.to_bytes()}


def top_of_images(peaks: np.ndarray, positions: np.ndarray, image_ids: np.ndarray, k: int, lowest: bool = False) -> Top:
    """Each filter's k best images (`lowest`: its k lowest, lowest first). peaks, positions: (images,
    filters) of each image's best unit (value, (y, x) in positions[..., :]; `lowest`: its lowest
    unit); image_ids: (images,). Equal values go to the lower id."""
    filters = peaks.shape[1]
    top = Top.empty(filters, k, lowest)
    if peaks.shape[0] == 0:
        return top
    ranked = peaks if lowest else -peaks
    order = np.lexsort((np.broadcast_to(image_ids[:, None], peaks.shape), ranked), axis=0)[:k]  # (k', filters)
    n = order.shape[0]
    columns = np.arange(filters)[None, :]
    top.activation[:, :n] = peaks[order, columns].T
    top.image[:, :n] = image_ids[order].T
    top.unit[:, :n] = positions[order, columns].transpose(1, 0, 2)
    return top


def merge(a: Top, b: Top, lowest: bool = False) -> Top:
    """The exact top k of two tops of distinct images (global ids): by activation, then the lower id
    (`lowest`: the exact bottom k of two bottoms, lowest first)."""
    k = a.activation.shape[1]
    activation = np.concatenate([a.activation, b.activation], axis=1)
    image = np.concatenate([a.image, b.image], axis=1)
    unit = np.concatenate([a.unit, b.unit], axis=1)
    rank_id = np.where(image < 0, np.iinfo(np.int64).max, image)
    order = np.lexsort((rank_id, activation if lowest else -activation), axis=1)[:, :k]
    return Top(np.take_along_axis(activation, order, 1), np.take_along_axis(image, order, 1),
               np.take_along_axis(unit, order[..., None], 1))


def to_global(top: Top, digests: list[str], index: dict[str, int]) -> Top:
    """A chunk's top with its images' chunk positions turned into global ids (`Dataset.index`); -1 stays -1."""
    ids = np.array([index[digest] for digest in digests] + [-1], np.int64)
    return Top(top.activation, ids[top.image], top.unit)


class Scanner:
    """One forward pass per batch gives the pre-ReLU maps of every planned layer; per image and
    filter it keeps the largest value and where it is, and the lowest value and where it is (the
    first, in row-major order, on ties): the top k and the bottom k come from the same pass."""

    def __init__(self, loaded, layers: list[str]):
        from atlasgen.model.graph import conv_layers, runnable_model
        from atlasgen.synthesis.engine import model_input
        from atlasgen.tf import keras, tf

        every, _ = runnable_model(loaded.model, pre_activation=True)
        names = [c.name for c in conv_layers(loaded.model)]
        self.layers = list(layers)
        model = keras.Model(every.inputs, [every.outputs[names.index(name)] for name in self.layers])
        convention = loaded.input_convention

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], jit_compile=False)
        def peaks(images):
            maps = model(model_input(convention, tf.cast(images, tf.float32) / 255.0), training=False)
            maps = maps if isinstance(maps, (list, tuple)) else [maps]
            out = []
            for m in maps:
                shape = tf.shape(m)
                flat = tf.reshape(m, (shape[0], shape[1] * shape[2], shape[3]))
                where = tf.argmax(flat, axis=1, output_type=tf.int32)
                low = tf.argmin(flat, axis=1, output_type=tf.int32)
                out.append((tf.reduce_max(flat, axis=1), where // shape[2], where % shape[2],
                            tf.reduce_min(flat, axis=1), low // shape[2], low % shape[2]))
            return out

        self._peaks = peaks

    def peaks(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per layer, for a batch of equal-size images: (highest values (batch, filters), their positions
        (batch, filters, 2), lowest values, their positions)."""
        out = []
        for values, ys, xs, lows, low_ys, low_xs in self._peaks(images):
            out.append((values.numpy(), np.stack([ys.numpy(), xs.numpy()], axis=-1),
                        lows.numpy(), np.stack([low_ys.numpy(), low_xs.numpy()], axis=-1)))
        return out


@dataclass
class Decoded:
    """A chunk's images as the model takes them: pixels by chunk position, and the chunk's facts
    (each image's resized [height, width] or None, and [position, reason] of each image skipped)."""

    pixels: dict[int, np.ndarray]
    sizes: list
    skipped: list

    @classmethod
    def of(cls, results: list) -> "Decoded":
        """From `decode_image`'s results, in chunk order."""
        decoded = cls({}, [], [])
        for i, result in enumerate(results):
            if isinstance(result, str):
                decoded.skipped.append([i, result])
                decoded.sizes.append(None)
            else:
                decoded.pixels[i] = result
                decoded.sizes.append(list(result.shape[:2]))
        return decoded


def decode_image(image: SourceImage, short_side: int) -> np.ndarray | str:
    """One image read, checked against its hash, decoded and resized by the convention: its pixels,
    or why it is skipped (a fact of its content). Raises Changed if it no longer reads as it was hashed."""
    try:
        data = read_file(image.path)
    except Unreadable as exc:
        raise Changed(f"{image.source} can no longer be read ({exc})") from None
    if hashlib.sha256(data).hexdigest() != image.digest:
        raise Changed(f"{image.source} changed")
    try:
        return load_image(data, short_side)
    except Unreadable as exc:
        return str(exc)


def decode_chunk(chunk: tuple[SourceImage, ...], short_side: int) -> Decoded:
    """A chunk's images decoded one after another (`scan_chunks` decodes them in threads, to the same result)."""
    return Decoded.of([decode_image(image, short_side) for image in chunk])


def scan_chunk(scanner: Scanner, chunk: tuple[SourceImage, ...], short_side: int, k: int, batch_size: int,
               fit_shapes: bool = False) -> tuple[list[Ranked | None], dict]:
    """Each planned layer's top k and bottom k of one chunk (chunk positions), and the chunk's facts: every
    image's resized size, and the images skipped with their reasons (facts of their content only:
    an image that no longer reads as it was hashed raises Changed, before any forward pass). With
    `fit_shapes`, `batch_size` is for images of up to (2 short_side)^2 pixels, and larger ones go in
    proportionally smaller batches. Serial: the build runs `scan_chunks`, which gives the same."""
    return scan_decoded(scanner, decode_chunk(chunk, short_side), short_side, k, batch_size, fit_shapes)


def scan_decoded(scanner: Scanner, decoded: Decoded, short_side: int, k: int, batch_size: int,
                 fit_shapes: bool = False) -> tuple[list[Ranked | None], dict]:
    """`scan_chunk` of a chunk already decoded: the forward passes (one per batch of equal-shape
    images, in chunk order) and each layer's top k and bottom k (None for a layer without images)."""
    per_layer: list[list] = [[] for _ in scanner.layers]
    by_shape: dict[tuple, list[int]] = {}
    for i, pixels in decoded.pixels.items():
        by_shape.setdefault(pixels.shape, []).append(i)
    for shape, ids in by_shape.items():
        size = batch_size
        if fit_shapes:  # batch_size is for images of up to (2 short_side)^2 pixels
            size = max(1, min(batch_size, batch_size * (2 * short_side) ** 2 // (shape[0] * shape[1])))
        for start in range(0, len(ids), size):
            part = ids[start:start + size]
            for layer_index, extremes in enumerate(scanner.peaks(np.stack([decoded.pixels[i] for i in part]))):
                per_layer[layer_index].append((np.array(part), *extremes))
    ranked = []
    for parts in per_layer:
        if parts:
            ids, values, positions, lows, low_positions = (np.concatenate(column) for column in zip(*parts))
            ids = ids.astype(np.int64)
            ranked.append(Ranked(top_of_images(values, positions, ids, k),
                                 top_of_images(lows, low_positions, ids, k, lowest=True)))
        else:
            ranked.append(None)
    return ranked, {"sizes": decoded.sizes, "skipped": decoded.skipped}


def scan_chunks(scanner: Scanner, chunks: list[tuple[SourceImage, ...]], short_side: int, k: int, batch_size: int,
                fit_shapes: bool = False, workers: int | None = None) -> Iterator[tuple[list | None, dict | None, Changed | None]]:
    """`scan_chunk` of each chunk, in order, as (tops, facts, None); (None, None, Changed) for a chunk
    with an image that no longer reads as it was hashed. `decoding_threads` read, hash, decode and
    resize a chunk's images, and the next chunk's while the model runs this one: at most two chunks
    are held decoded (this one and the next), and each chunk gives exactly what `scan_chunk` gives."""
    with decoding_threads(workers) as pool:
        ahead: list[Future] | None = None
        for i, chunk in enumerate(chunks):
            current = ahead or [pool.submit(decode_image, image, short_side) for image in chunk]
            ahead = None
            try:
                decoded = Decoded.of([future.result() for future in current])  # the first Changed in chunk order
            except Changed as changed:
                for future in current:
                    future.cancel()
                result = (None, None, changed)
            else:
                if i + 1 < len(chunks):  # the next chunk decodes while the model runs this one
                    ahead = [pool.submit(decode_image, image, short_side) for image in chunks[i + 1]]
                result = (*scan_decoded(scanner, decoded, short_side, k, batch_size, fit_shapes), None)
            current = decoded = None  # only the next chunk stays decoded while the caller stores this one
            yield result


def scan_batch_size(geometry, layers: list[str], short_side: int) -> int:
    """Images of one shape per forward pass, from the device's free memory (`geometry`: the model's
    atlasgen.model.layers.ModelGeometry)."""
    from atlasgen.synthesis.engine import choose_batch_size, memory_budget

    # A photo's longer side is rarely more than twice its shorter one.
    per_image = geometry.activation_bytes(layers[-1], 2 * short_side)
    return choose_batch_size(per_image, memory_budget().usable, wanted=32)


# --- precision ----------------------------------------------------------------------------

#: What a chunk's facts say it was scanned in: full float32, or float32 with TF32 allowed on a GPU.
SCAN_PRECISIONS = ("float32", "tf32")


def tf32_allowed() -> bool | None:
    """Whether TensorFlow now lets a GPU run float32 convolutions and matmuls as TF32 (10-bit
    mantissa inputs, float32 sums); None on a CPU, where TF32 does not apply."""
    from atlasgen.synthesis.engine import synthesis_device
    from atlasgen.tf import tf

    if synthesis_device() == "CPU":
        return None
    return bool(tf.config.experimental.tensor_float_32_execution_enabled())


@contextlib.contextmanager
def scan_precision(allow_tf32: bool = False) -> Iterator[str]:
    """TensorFlow set for the scan, and the precision it computes in, as each chunk's facts record
    it: "float32" on a CPU (TF32 does not apply) and on a GPU, where TF32 is disabled while the scan
    runs unless `allow_tf32` (`Dataset.tf32`: an explicit --precision mixed) and TensorFlow allowed
    it; "tf32" where it stays allowed. TensorFlow's previous setting is restored after."""
    allowed = tf32_allowed()
    if allowed is None:
        yield "float32"
        return
    from atlasgen.tf import tf

    tf.config.experimental.enable_tensor_float_32_execution(allow_tf32 and allowed)
    try:
        yield "tf32" if allow_tf32 and allowed else "float32"
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(allowed)


def chunks_precision(chunks: list, store) -> str | None:
    """The precision of the scan from the stored facts of one layer's chunk artifacts (every layer's
    artifact of a chunk has the same facts): "float32" only if every chunk was scanned in full
    float32; "tf32" if any allowed TF32; "unrecorded" if an entry does not say; None without chunks
    or while one is missing."""
    said = set()
    for artifact in chunks:
        entry = store.get(artifact.key)
        if entry is None:
            return None
        said.add(entry.meta.get("precision"))
    if not said:
        return None
    if "tf32" in said:
        return "tf32"
    return "float32" if said == {"float32"} else "unrecorded"


# --- examples -----------------------------------------------------------------------------


class PhotoCache:
    """Decoded, resized dataset images by digest, the most recent CROP_CACHE of them."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.by_digest = {image.digest: image for image in dataset.images}
        self._cache: dict[str, np.ndarray] = {}

    def get(self, digest: str) -> np.ndarray:
        if digest in self._cache:
            self._cache[digest] = self._cache.pop(digest)
            return self._cache[digest]
        image = self.by_digest[digest]
        try:
            data = read_file(image.path)
            if hashlib.sha256(data).hexdigest() != digest:
                raise Unreadable("it changed while the build ran")
            pixels = load_image(data, self.dataset.short_side)
        except Unreadable as exc:
            raise AtlasgenError(
                f"dataset image {image.source} can no longer be read ({exc}); run atlasgen build again"
            ) from None
        self._cache[digest] = pixels
        while len(self._cache) > CROP_CACHE:
            self._cache.pop(next(iter(self._cache)))
        return pixels


def skipped_files(dataset: Dataset, chunks: list, store) -> list[tuple[str, str]] | None:
    """(source, reason) of every image file the scan skipped, in source order, from the stored entries
    of one layer's chunk artifacts (every layer's scan skips the same files); None while one is missing."""
    if not chunks:
        return None
    sources = {image.digest: image.source for image in dataset.images}
    skipped = list(dataset.refused)
    for artifact in chunks:
        entry = store.get(artifact.key)
        if entry is None:
            return None
        digests = artifact.recipe["images"]
        skipped += [(sources[digests[index]], reason) for index, reason in entry.meta["skipped"]]
    return sorted(skipped)
