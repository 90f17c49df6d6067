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


def test_a_fidelity_search_draws_its_front_against_the_agreement_lost() -> None:
    from compression_core.report.search import pareto_png, search_html

    trials = [
        {"index": i, "state": "succeeded", "parameters": {"p": v}, "ratio": r, "agreement_after": a}
        for i, (v, r, a) in enumerate([(0.3, 2.0, 0.99), (0.6, 4.0, 0.97), (0.9, 8.0, 0.7)])
    ]
    section = {
        "mode": "budget",
        "trials": trials,
        "pareto": [0, 1, 2],
        "best": 1,
        "budget": {"measure": "agreement", "met": True, "message": "a trial meets the budget (x)"},
    }
    png = pareto_png(section)
    assert png is not None and png.startswith(b"\x89PNG")
    assert pareto_png({**section, "trials": [{**t, "agreement_after": None} for t in trials]}) is None
    page = search_html({"search": section})
    assert (
        "test agreement" in page and "97.00%" in page and "Fidelity budget: a trial meets the budget" in page
    )
