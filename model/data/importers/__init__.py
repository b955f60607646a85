"""Importers from public and customer formats into the canonical COCO dataset."""
from model.data.importers.common import SourceFormatError

__all__ = ["SourceFormatError"]
