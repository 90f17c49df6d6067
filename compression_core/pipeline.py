"""Compatibility home of the documented entry points; the pipeline lives in `compression_core.job.pipeline`."""

from compression_core.job.pipeline import Progress, ProgressCallback, compress_file, compress_state_dict

__all__ = ["Progress", "ProgressCallback", "compress_file", "compress_state_dict"]
