"""report.html of a job without labels: the fidelity cards, and the split and sample count behind them."""

from __future__ import annotations

from compression_core.report import render_report

METRICS = {
    "evaluation": {
        "data": {"name": "x-only.npz", "evaluated_on": "test", "labels": "predictions"},
        "before": {"samples": 360, "split": "test", "n": 360, "fidelity": {"top1_agreement": 1.0}},
        "after": {
            "samples": 360,
            "split": "test",
            "n": 360,
            "fidelity": {"top1_agreement": 0.9361, "relative_output_error": 0.2125},
        },
    }
}


def test_report_shows_fidelity_instead_of_errors() -> None:
    page, _ = render_report(METRICS)
    assert "top-1 agreement with the upload" in page and "93.61%" in page
    assert "relative output error" in page and "0.2125" in page
    assert "Fidelity to the uploaded model measured on 360 samples of x-only.npz, test split" in page
    assert "error after" not in page
