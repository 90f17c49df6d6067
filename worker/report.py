"""report.html for a finished job (a convenience: a job never fails over its report)."""

from __future__ import annotations

import logging
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)

REPORT_MAX_BYTES = 1 << 30


def write_report(job_id: str, work: Path, model_path: Path) -> None:
    """report.html beside the other outputs (plots embedded). A report is a convenience: if it cannot be
    drawn, the job still succeeds without it, and the reason goes to the log."""
    from compression_core.report import write_job_report

    # the full report loads the original and model.pth whole (plots of weights); a job without model.pth (a
    # packed checkpoint, a sharded or Hugging Face model, issues 14 and 23) or over 1 GiB gets the report
    # metrics.json alone draws
    if (
        not (work / "model.pth").is_file()
        or not model_path.is_file()
        or model_path.stat().st_size > REPORT_MAX_BYTES
    ):
        log.info("job %s: report.html from metrics.json alone (no model.pth, or over 1 GiB)", job_id)
        _metrics_only(job_id, work)
        return
    try:
        write_job_report(work, model_path)
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - never fail a compressed model over its report
        log.warning("job %s: report.html could not be written; publishing without it", job_id, exc_info=True)
        (work / "report.html").unlink(missing_ok=True)


def _metrics_only(job_id: str, work: Path) -> None:
    import json

    from compression_core.report import write_report

    try:
        write_report(work, json.loads((work / "metrics.json").read_text(encoding="utf-8")))
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - never fail a compressed model over its report
        log.warning("job %s: report.html could not be written; publishing without it", job_id, exc_info=True)
        (work / "report.html").unlink(missing_ok=True)
