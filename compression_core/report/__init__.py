"""A human-readable report of a compression job: a self-contained report.html and a few PNG plots.

Pure functions of the metrics dict and the tensors before/after; matplotlib is imported only when a plot is
drawn, and `headline` (used by the HTTP client) needs neither torch nor matplotlib.
"""

from compression_core.report.headline import Headline, headline
from compression_core.report.layers import LayerRow, layer_rows
from compression_core.report.render import render_report
from compression_core.report.write import write_job_report, write_report

__all__ = [
    "Headline",
    "LayerRow",
    "headline",
    "layer_rows",
    "render_report",
    "write_job_report",
    "write_report",
]
