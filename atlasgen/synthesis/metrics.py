"""Per-image metrics stored with every synthesised image."""

from __future__ import annotations

from atlasgen.synthesis.images import FilterImage


def activation_vs_best_probe(mean_activation: float, probe_best_mean: float | None) -> float | None:
    """The image's mean activation over the filter's best probe photo; None when every probe is silent."""
    return mean_activation / probe_best_mean if probe_best_mean and probe_best_mean > 0 else None


def image_metrics(image: FilterImage, probe_best_mean: float | None) -> dict:
    """Objective, mean activation, and that activation over the filter's best probe photo.

    `probe_best_mean` is the filter's largest post-ReLU spatial mean over the probe photos;
    a ratio above 1 means the synthesised image drives the filter harder than any photo did.
    """
    metrics = {
        "objective": image.objective,
        "mean_activation": image.mean_activation,
        "activation_vs_best_probe": activation_vs_best_probe(image.mean_activation, probe_best_mean),
        "steps": int(len(image.history)),
    }
    if image.kind == "neuron":
        metrics["changed_pixels_outside_box"] = image.changed_outside_box
    return metrics
