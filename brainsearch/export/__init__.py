"""Exporters: what a user takes elsewhere (architecture specs, a standalone PyTorch file, trained weights)."""

from brainsearch.export.spec import SpecFormat, export_document, render_spec
from brainsearch.export.standalone import standalone_source
from brainsearch.export.weights import load_weights, save_weights, trial_weights_path

__all__ = [
    "SpecFormat",
    "export_document",
    "load_weights",
    "render_spec",
    "save_weights",
    "standalone_source",
    "trial_weights_path",
]
