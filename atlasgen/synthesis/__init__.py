"""Feature synthesis: the images, crops and maps of every filter, as a library the build calls.

Stages, in Lucid's shape: `LayerEngine` (the model cut at a layer) -> `optimise(engine, objective,
param_f, transforms, steps)` (one compiled batch loop) -> `synthesise(engine, kind, ids, params)`
(one batch of whole-filter or centre-neuron images) -> records (`FilterImage`, `ActivationMap`).
Importing it does not start TensorFlow; the first computation does.
"""

from atlasgen.synthesis.engine import LayerEngine, PatchPlan
from atlasgen.synthesis.images import FilterImage, channel_images, neuron_images, rf_crop, synthesise
from atlasgen.synthesis.maps import ActivationMap, activation_maps, probe_means
from atlasgen.params import SynthesisParams
from atlasgen.synthesis.optimise import FourierImage, optimise
from atlasgen.synthesis.probes import Probe, default_probe, load_probes, natural_photos

__all__ = [
    "ActivationMap", "FilterImage", "FourierImage", "LayerEngine", "PatchPlan", "Probe", "SynthesisParams",
    "activation_maps", "channel_images", "default_probe", "load_probes", "natural_photos", "neuron_images",
    "optimise", "probe_means", "rf_crop", "synthesise",
]
