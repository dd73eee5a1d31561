"""Exporters: what a user takes elsewhere (architecture specs, a standalone PyTorch file, trained weights)."""

from brainsearch.export.files import (
    EXPORT_FORMATS,
    ExportFile,
    ExportFormat,
    WeightsNotKept,
    export_file,
    kept_weights,
)
from brainsearch.export.spec import SpecFormat, export_document, render_spec
from brainsearch.export.standalone import standalone_source
from brainsearch.export.weights import load_weights, save_weights

__all__ = [
    "EXPORT_FORMATS",
    "ExportFile",
    "ExportFormat",
    "SpecFormat",
    "WeightsNotKept",
    "export_document",
    "export_file",
    "kept_weights",
    "load_weights",
    "render_spec",
    "save_weights",
    "standalone_source",
]
