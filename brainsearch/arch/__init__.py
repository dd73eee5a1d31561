"""Architecture spec, cost model and presets: pure data, no torch."""

from brainsearch.arch.cost import Cost, cost, layer_params
from brainsearch.arch.presets import preset, preset_names
from brainsearch.arch.spec import (
    ACTIVATIONS,
    GATED_ACTIVATIONS,
    GATINGS,
    Architecture,
    AttentionSpec,
    FFNSpec,
    LayerSpec,
    MoESpec,
)

__all__ = [
    "ACTIVATIONS",
    "GATED_ACTIVATIONS",
    "GATINGS",
    "Architecture",
    "AttentionSpec",
    "Cost",
    "FFNSpec",
    "LayerSpec",
    "MoESpec",
    "cost",
    "layer_params",
    "preset",
    "preset_names",
]
