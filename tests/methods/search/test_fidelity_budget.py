"""A search whose budget is fidelity to the uploaded model (`min_top1_agreement`,
`max_relative_output_error`): validated in the spec, measured on the validation split, and run on data
without labels, where an error budget is refused naming what to give instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from compression_core.data import DataSplits
from compression_core.errors import CompressionError
from compression_core.job.pipeline import compress_file
from compression_core.methods.search.results import choose_best
from compression_core.methods.search.spec import SearchSpec
from compression_core.methods.search.trials import TrialResult
from compression_core.spec import Spec
from compression_core.train import save_state_dict, train_reference
from compression_core.training.finetune import RetrainConfig

MLP = {"arch": "mlp", "kwargs": {"sizes": [64, 32, 10]}}
SPARSITY = {"rules.0.steps.0.sparsity": {"low": 0.3, "high": 0.99}}


def _search(**fields: object) -> SearchSpec:
    return SearchSpec.model_validate({"mode": "budget", "parameters": SPARSITY, **fields})


def test_the_budget_may_be_stated_in_fidelity_and_only_one_budget_at_once() -> None:
    agreement = _search(min_top1_agreement=0.95)
    assert agreement.budget_measure == "agreement" and agreement.budget_fraction == pytest.approx(0.05)
    output = _search(max_relative_output_error=0.2)
    assert output.budget_measure == "output_error" and output.budget_fraction == 0.2
    assert _search(max_error_increase=1).budget_measure == "error"
    with pytest.raises(
        ValidationError, match="give one budget, not max_error_increase and min_top1_agreement"
    ):
        _search(max_error_increase=1, min_top1_agreement=0.9)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        _search(min_top1_agreement=1.5)
    with pytest.raises(ValidationError, match="min_top1_agreement"):
        _search()  # a budget search names its budget; the message lists the fidelity ones


def test_the_most_compressed_trial_within_the_agreement_budget_is_chosen() -> None:
    search = _search(min_top1_agreement=0.95)
    trials = [
        TrialResult(0, {}, "succeeded", ratio=2.0, validation_agreement_after=0.99, measure="agreement"),
        TrialResult(1, {}, "succeeded", ratio=5.0, validation_agreement_after=0.96, measure="agreement"),
        TrialResult(2, {}, "succeeded", ratio=9.0, validation_agreement_after=0.90, measure="agreement"),
    ]
    assert [t.feasible(search.budget_fraction) for t in trials] == [True, True, False]
    assert choose_best(search, trials) == (1, True)
    strict = _search(min_top1_agreement=0.999)
    assert choose_best(strict, trials) == (0, False)  # none within: the least wrong, and it says so


@pytest.fixture(scope="module")
def unlabelled_job(
    digits: DataSplits, one_thread: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    torch.manual_seed(0)
    reference = train_reference(MLP, digits, RetrainConfig(epochs=4, lr=0.05, batch_size=32))
    folder = tmp_path_factory.mktemp("job")
    data = folder / "x-only.npz"
    np.savez(data, x_train=digits.train.tensors[0].numpy(), x_test=digits.test.tensors[0].numpy())
    return save_state_dict(reference.model, folder / "mlp.safetensors"), data


def _spec(search: dict[str, object]) -> Spec:
    return Spec.model_validate(
        {
            "model": MLP,
            "data": {"upload": True},
            "rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.5}]}],
            "search": {"mode": "budget", "parameters": SPARSITY, "max_trials": 4, **search},
        }
    )


def test_a_budget_search_without_labels_keeps_the_agreement_it_was_given(
    unlabelled_job: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = unlabelled_job
    metrics = compress_file(model, _spec({"min_top1_agreement": 0.95}), tmp_path, data_path=data)
    section = metrics["search"]
    assert section["budget"]["measure"] == "agreement" and section["budget"]["met"] is True
    assert section["budget"]["min_top1_agreement"] == 0.95
    trials = section["trials"]
    best = trials[section["best"]]
    assert best["validation_agreement_after"] >= 0.95
    over = [t for t in trials if t["state"] == "succeeded" and t["validation_agreement_after"] < 0.95]
    assert over and all(t["ratio"] > best["ratio"] for t in over)  # the more compressed ones broke it
    assert metrics["evaluation"]["after"]["fidelity"]["top1_agreement"] == best["agreement_after"]
    assert section["pareto"]  # drawn against the agreement lost, since there is no error


def test_an_error_budget_on_data_without_labels_names_the_fidelity_budgets(
    unlabelled_job: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = unlabelled_job
    with pytest.raises(
        CompressionError, match="search.min_top1_agreement or search.max_relative_output_error"
    ):
        compress_file(model, _spec({"max_error_increase": 1.0}), tmp_path, data_path=data)
