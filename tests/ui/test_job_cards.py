"""The web page's job cards (service/routes/ui.py): a job without labels shows its top-1 agreement with
the upload; a labelled one its error before and after."""

from __future__ import annotations

from service.routes.ui import _cards


def test_cards_show_the_agreement_or_the_error() -> None:
    fidelity = {"evaluation": {"after": {"fidelity": {"top1_agreement": 0.9361}}}}
    assert ("top-1 agreement with the upload", "93.61%") in _cards(fidelity)
    labelled = {"evaluation": {"before": {"error": 0.1}, "after": {"error": 0.12}}}
    cards = dict(_cards(labelled))
    assert cards["error"] == "10.00% → 12.00%" and "top-1 agreement with the upload" not in cards
