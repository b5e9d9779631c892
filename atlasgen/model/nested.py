"""Nested models inlined: a model whose graph calls sub-models (ConvNeXt's stem and downsampling
blocks are `Sequential`) becomes one flat functional model of the same layers.

Each layer and op is called again on a new input as a fresh copy of itself (its configuration, its
name, its weights), so every operation of the flat model has exactly one call in one graph, as the
walk (`graph.spatial_ops`) and the replay (`graph.runnable_model`) expect.
"""

from __future__ import annotations

from atlasgen.errors import AtlasgenError, first_line
from atlasgen.tf import keras


def has_nested_models(model) -> bool:
    return any(isinstance(op, keras.Model) for op in (getattr(model, "operations", None) or model.layers))


def inlined(model):
    """`model` itself when it nests no model; else the flat functional model of the same computation."""
    if not has_nested_models(model):
        return model
    source = model.inputs[0]
    image = keras.Input(tuple(source.shape[1:]), dtype=source.dtype, name=source._keras_history.operation.name)
    outputs = _call_inlined(model, image)
    return keras.Model(image, outputs, name=model.name)


def _call_inlined(model, inputs):
    """The outputs of `model` on `inputs`, every operation of it and of its sub-models called as a copy."""
    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = _call_inlined(layer, x) if isinstance(layer, keras.Model) else _copy(layer)(x)
        return x
    if not hasattr(model, "_run_through_graph"):
        raise AtlasgenError(f"sub-model {model.name!r} ({type(model).__name__}) is not functional or Sequential; "
                            f"atlasgen walks only graphs it can see")

    def operation(op):
        if isinstance(op, keras.Model):
            return lambda *args, **kwargs: _call_inlined(op, args[0])
        return _copy(op)

    return model._run_through_graph(inputs, operation_fn=operation)


def _copy(op):
    """A callable that calls a copy of `op` (same class, configuration and name) and gives it `op`'s weights."""
    try:
        copy = op.__class__.from_config(op.get_config())
    except Exception as exc:
        raise AtlasgenError(
            f"layer {op.name!r} ({type(op).__name__}) of a nested model cannot be copied to flatten the model "
            f"({first_line(exc)})"
        ) from None
    if not isinstance(op, keras.layers.Layer):
        return copy

    def call(*args, **kwargs):
        outputs = copy(*args, **kwargs)
        copy.set_weights(op.get_weights())
        return outputs

    return call
