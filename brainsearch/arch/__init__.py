"""Architecture spec, cost model and presets: pure data, no torch."""

from brainsearch.arch.cost import Cost, cost, layer_params
from brainsearch.arch.presets import preset, preset_names
from brainsearch.arch.scale import SCALE_PRESETS, ScalePreset, scale, scale_preset
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
    "SCALE_PRESETS",
    "Architecture",
    "AttentionSpec",
    "Cost",
    "FFNSpec",
    "LayerSpec",
    "MoESpec",
    "ScalePreset",
    "cost",
    "layer_params",
    "preset",
    "preset_names",
    "scale",
    "scale_preset",
]
