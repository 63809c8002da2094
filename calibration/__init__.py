"""INT8 calibration data (FOA recordings or generated scenes) and the calibration report."""

from glfer_edge.calibration.readers import FolderReader, SegmentReader, SynthReader

__all__ = ["FolderReader", "SegmentReader", "SynthReader"]
