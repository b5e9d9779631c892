"""Activation maps: where on a real photo a filter fires, as a heatmap and as an overlay."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from atlasgen.codec import colour_map
from atlasgen.synthesis.engine import LayerEngine
from atlasgen.synthesis.probes import Probe
from atlasgen.tf import tf


NORMALISATION = "post-ReLU activation / the filter's maximum over all probe photos (0 = silent, 1 = that maximum)"


@dataclass
class ActivationMap:
    layer: str
    filter: int
    probe: str
    heatmap: np.ndarray  # uint8 (h, w, 3): the map resized to the photo, colour-mapped
    overlay: np.ndarray  # uint8 (h, w, 3): the heatmap over a dimmed photo
    peak: float  # the largest post-ReLU value of this map
    mean: float  # the spatial mean of this map
    scale: float  # the value shown as 1: the filter's peak over all probes
    normalisation: str = NORMALISATION


def overlay(photo: np.ndarray, normalised: np.ndarray) -> np.ndarray:
    """The heatmap over a dimmed photo, more opaque where the filter fires."""
    alpha = (0.25 + 0.65 * np.clip(normalised, 0, 1))[..., None]
    blended = photo.astype(np.float32) * 0.8 * (1 - alpha) + colour_map(normalised).astype(np.float32) * alpha
    return np.round(blended).astype(np.uint8)


def post_relu_maps(engine: LayerEngine, probe: Probe, filter_ids: list[int]) -> np.ndarray:
    """(h', w', len(filter_ids)) post-ReLU maps of the filters on one photo at its own size, in float32
    whatever the engine's precision (their recipes name no precision)."""
    image = tf.constant(probe.image[None].astype(np.float32) / 255.0)
    maps = engine.maps(image, tf.constant(filter_ids, tf.int32), float32=True)
    return np.maximum(maps.numpy()[0], 0)


def _resize(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize(size, Image.BILINEAR))


def render_map(raw: np.ndarray, scale: float, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A post-ReLU map at layer resolution to (heatmap, overlay) at the photo's size, 1 = `scale`."""
    height, width = photo.shape[:2]
    resized = _resize(raw, (width, height))
    normalised = resized / scale if scale > 0 else np.zeros_like(resized)
    return colour_map(normalised), overlay(photo, normalised)


def activation_maps(engine: LayerEngine, filter_ids: list[int], probes: list[Probe]) -> dict[int, list[ActivationMap]]:
    """Every filter's map on every probe, normalised by the filter's peak over all probes."""
    raw = [post_relu_maps(engine, probe, filter_ids) for probe in probes]
    scales = np.max([m.max(axis=(0, 1)) for m in raw], axis=0)
    result: dict[int, list[ActivationMap]] = {f: [] for f in filter_ids}
    for probe, maps in zip(probes, raw):
        for index, f in enumerate(filter_ids):
            scale = float(scales[index])
            heatmap, blended = render_map(maps[..., index], scale, probe.image)
            result[f].append(
                ActivationMap(
                    engine.name, f, probe.name, heatmap, blended,
                    peak=float(maps[..., index].max()), mean=float(maps[..., index].mean()), scale=scale,
                )
            )
    return result


def probe_means(engine: LayerEngine, filter_ids: list[int], probes: list[Probe]) -> np.ndarray:
    """(len(probes), len(filter_ids)) spatial means of each filter's post-ReLU map on each photo."""
    return np.array([post_relu_maps(engine, p, filter_ids).mean(axis=(0, 1)) for p in probes])
