"""Feature synthesis: the images, crops and maps of every filter, as a library the build calls.

Stages: `LayerEngine` (the model cut at a layer) -> `Optimiser` (one compiled batch loop over a
parametrisation, transforms and an objective) -> records (`FilterImage`, `ActivationMap`).
"""

from atlasgen.synthesis.engine import LayerEngine, PatchPlan
from atlasgen.synthesis.images import FilterImage, channel_images, neuron_images, rf_crop
from atlasgen.synthesis.maps import ActivationMap, activation_maps, probe_means
from atlasgen.synthesis.metrics import image_metrics
from atlasgen.synthesis.optimise import Optimiser, SynthesisParams
from atlasgen.synthesis.probes import Probe, default_probe, load_probes, natural_photos

__all__ = [
    "ActivationMap", "FilterImage", "LayerEngine", "Optimiser", "PatchPlan", "Probe", "SynthesisParams",
    "activation_maps", "channel_images", "default_probe", "image_metrics", "load_probes", "natural_photos",
    "neuron_images", "probe_means", "rf_crop",
]
