"""Resumable SWS runs: a run stopped after some epochs continues at the next epoch from the job's folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from compression_core.errors import Cancelled
from compression_core.job.pipeline import compress_file
from compression_core.methods.sws.algorithm import CHECKPOINT_NAME, run_sws
from compression_core.methods.sws.spec import SWSSpec
from compression_core.spec import parse_spec

from ..resume import fresh_model, killed_after
from .conftest import MLP, SWS

EPOCHS = 4


def _spec(**extra) -> SWSSpec:
    return SWSSpec(**{**SWS, "epochs": EPOCHS, "select": "fc*.weight", **extra})


def test_killed_sws_run_resumes_at_the_next_epoch(reference_state, digits, tmp_path):
    on_epoch, should_cancel, seen = killed_after(2, "epoch")
    with pytest.raises(Cancelled):
        run_sws(
            fresh_model(MLP, reference_state),
            _spec(),
            digits.train,
            eval_set=digits.validation,
            on_epoch=on_epoch,
            should_cancel=should_cancel,
            checkpoint_dir=tmp_path,
        )
    assert seen == [1, 2] and (tmp_path / CHECKPOINT_NAME).is_file()

    resumed_epochs: list[int] = []
    starts: list[int] = []
    resumed = run_sws(
        fresh_model(MLP, reference_state),  # a new worker: the uploaded weights again
        _spec(),
        digits.train,
        eval_set=digits.validation,
        on_epoch=lambda s: resumed_epochs.append(s.epoch),
        checkpoint_dir=tmp_path,
        on_resume=starts.append,
    )
    assert resumed.resumed_at == 3 and starts == [3] and resumed_epochs == [3, 4]
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]  # the earlier epochs' history kept

    straight = run_sws(fresh_model(MLP, reference_state), _spec(), digits.train, eval_set=digits.validation)
    assert straight.resumed_at is None
    # the same run as one never stopped: weights, Adam state, mixture and batch order all came back
    for field in ("means", "log_precisions", "log_pis"):
        assert np.allclose(getattr(straight.learned, field), getattr(resumed.learned, field), atol=1e-6), (
            field
        )
    for name, record in straight.records.items():
        assert torch.allclose(record.reconstruct(), resumed.records[name].reconstruct(), atol=1e-6), name
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in straight.history])
    assert resumed.history[-1].validation_error == pytest.approx(straight.history[-1].validation_error)


def test_checkpoint_of_another_spec_or_upload_is_ignored(reference_state, digits, tmp_path):
    on_epoch, should_cancel, _ = killed_after(2, "epoch")
    with pytest.raises(Cancelled):
        run_sws(
            fresh_model(MLP, reference_state),
            _spec(),
            digits.train,
            on_epoch=on_epoch,
            should_cancel=should_cancel,
            checkpoint_dir=tmp_path,
        )
    other = run_sws(fresh_model(MLP, reference_state), _spec(tau=0.5), digits.train, checkpoint_dir=tmp_path)
    assert other.resumed_at is None and [h.epoch for h in other.history] == [1, 2, 3, 4]
    changed = {k: v + 0.01 for k, v in reference_state.items()}
    assert (
        run_sws(fresh_model(MLP, changed), _spec(tau=0.5), digits.train, checkpoint_dir=tmp_path).resumed_at
        is None
    )


def test_sws_job_stopped_after_some_epochs_resumes_at_the_next_epoch(reference_state, tmp_path):
    """A worker restart: the job's folder keeps the checkpoint, the next attempt continues at epoch 3 of 4."""
    model_path = tmp_path / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in reference_state.items()}, str(model_path))
    sws = {**SWS, "epochs": EPOCHS, "select": "fc*.weight"}
    spec = parse_spec(json.dumps({"model": MLP, "data": {"builtin": "digits"}, "sws": sws}))
    seen = []

    def stop_after_epoch_2() -> bool:
        return any(p.stage == "sws" and p.message.startswith("SWS epoch 2/4") for p in seen)

    with pytest.raises(Cancelled):
        compress_file(
            model_path,
            spec,
            tmp_path / "attempt1",
            progress=seen.append,
            should_cancel=stop_after_epoch_2,
            checkpoint_dir=tmp_path / "job",
        )
    again = []
    metrics = compress_file(
        model_path, spec, tmp_path / "attempt2", progress=again.append, checkpoint_dir=tmp_path / "job"
    )
    messages = [p.message for p in again if p.stage == "sws"]
    assert messages[0] == "SWS resuming at epoch 3/4 from the job's checkpoint"
    assert messages[1].startswith("SWS epoch 3/4") and messages[-1].startswith("SWS epoch 4/4")
    fractions = [p.fraction for p in again]
    assert fractions == sorted(fractions)  # progress continues from where the first attempt stopped
    assert metrics["sws"]["resumed_at_epoch"] == 3
    assert [h["epoch"] for h in metrics["sws"]["history"]] == [1, 2, 3, 4]

    done = []  # a restart after the last epoch (while quantizing or encoding): no epoch runs again
    finished = compress_file(
        model_path, spec, tmp_path / "attempt3", progress=done.append, checkpoint_dir=tmp_path / "job"
    )
    assert [p.message for p in done if p.stage == "sws"] == [
        "SWS: all 4 epochs were done before the restart (job's checkpoint)"
    ]
    assert (
        finished["sws"]["resumed_at_epoch"] == 5 and finished["sws"]["nonzero"] == metrics["sws"]["nonzero"]
    )
    assert finished["evaluation"]["after"]["error"] == metrics["evaluation"]["after"]["error"]

    other = parse_spec(json.dumps({"model": MLP, "data": {"builtin": "digits"}, "sws": {**sws, "tau": 0.5}}))
    fresh = compress_file(model_path, other, tmp_path / "attempt4", checkpoint_dir=tmp_path / "job")
    assert fresh["sws"]["resumed_at_epoch"] is None  # another spec: the checkpoint is not its own
