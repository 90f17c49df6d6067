"""Resumable LC runs: a run stopped after some μ steps continues at the next step from the job's folder."""

from __future__ import annotations

import json

import pytest
import torch

from compression_core.errors import Cancelled
from compression_core.methods.lc.algorithm import run_lc
from compression_core.methods.lc.checkpoint import CHECKPOINT_NAME
from compression_core.spec import parse_spec

from ..resume import fresh_model, killed_after
from .conftest import MLP

RULES = [
    {"select": {"name": "fc1.weight"}, "steps": [{"type": "lowrank", "alpha": 2e-5}]},
    {
        "select": {"name": "fc2.weight"},
        "steps": [{"type": "prune", "keep": 60}, {"type": "quantize", "k": 3}],
    },
]


def _spec(steps=5, **lc):
    schedule = {
        "mu0": 1e-3,
        "mu_growth": 2.0,
        "steps": steps,
        "l_step": {"epochs": 1, "lr": 0.1, "batch_size": 64},
    }
    schedule.update(lc)
    return parse_spec(
        json.dumps({"rules": RULES, "model": MLP, "data": {"builtin": "digits"}, "lc": schedule})
    )


def test_killed_lc_run_resumes_at_the_next_step(reference_state, digits, tmp_path):
    on_step, should_cancel, seen = killed_after(3, "step")
    with pytest.raises(Cancelled):
        run_lc(
            fresh_model(MLP, reference_state),
            _spec(),
            digits.train,
            eval_set=digits.validation,
            on_step=on_step,
            should_cancel=should_cancel,
            checkpoint_dir=tmp_path,
        )
    assert seen == [0, 1, 2, 3] and (tmp_path / CHECKPOINT_NAME).is_file()

    resumed_steps: list[int] = []
    resumed = run_lc(
        fresh_model(MLP, reference_state),  # a new worker: the uploaded weights again
        _spec(),
        digits.train,
        eval_set=digits.validation,
        on_step=lambda s: resumed_steps.append(s.step),
        checkpoint_dir=tmp_path,
    )
    assert resumed.resumed_at == 4 and resumed_steps == [4, 5]
    assert [h.step for h in resumed.history] == [0, 1, 2, 3, 4, 5]  # the earlier steps' history kept

    straight = run_lc(fresh_model(MLP, reference_state), _spec(), digits.train, eval_set=digits.validation)
    assert straight.resumed_at is None
    for name, record in straight.records.items():  # the same result as a run that was never stopped
        assert torch.allclose(record.reconstruct(), resumed.records[name].reconstruct(), atol=1e-5), name
    assert resumed.history[-1].validation_error == pytest.approx(straight.history[-1].validation_error)


def test_checkpoint_of_another_spec_or_upload_is_ignored(reference_state, digits, tmp_path):
    on_step, should_cancel, _ = killed_after(2, "step")
    with pytest.raises(Cancelled):
        run_lc(
            fresh_model(MLP, reference_state),
            _spec(),
            digits.train,
            on_step=on_step,
            should_cancel=should_cancel,
            checkpoint_dir=tmp_path,
        )
    other = run_lc(fresh_model(MLP, reference_state), _spec(mu0=2e-3), digits.train, checkpoint_dir=tmp_path)
    assert other.resumed_at is None and [h.step for h in other.history] == [0, 1, 2, 3, 4, 5]
    changed = {k: v + 0.01 for k, v in reference_state.items()}
    assert (
        run_lc(fresh_model(MLP, changed), _spec(mu0=2e-3), digits.train, checkpoint_dir=tmp_path).resumed_at
        is None
    )
