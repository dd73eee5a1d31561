"""Exporters: what a user takes elsewhere (architecture specs, a standalone PyTorch file, trained weights).

Importing this package loads neither torch nor the storage layer (SQLAlchemy, Alembic): exporting only writes text
or serves a file, and the API process imports it.
"""

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

__all__ = [
    "EXPORT_FORMATS",
    "ExportFile",
    "ExportFormat",
    "SpecFormat",
    "WeightsNotKept",
    "export_document",
    "export_file",
    "kept_weights",
    "render_spec",
    "standalone_source",
]
