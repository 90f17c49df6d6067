"""The documented entry points' old home; the pipeline lives in `compression_core.job.pipeline`."""

from compression_core.job.pipeline import Progress, ProgressCallback, compress_file, compress_state_dict

__all__ = ["Progress", "ProgressCallback", "compress_file", "compress_state_dict"]
