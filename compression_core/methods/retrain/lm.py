"""`retrain` on a Hugging Face causal LM (issue 23): the same phases (iterative prune-retrain, retraining with
the compressed structure held), trained with the model's own loss on the job's `train` token ids
(`training/lm.py`): the causal LM loss, or distillation's loss to a teacher's logits when the job's
`distill` set one (`job.lm_loss`, methods/distill/lm.py). The test split's perplexity after compression is
measured on the model holding exactly what the records store (what model.bin decodes to)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import TensorDataset

from compression_core.errors import InputError
from compression_core.job.context import JobContext
from compression_core.records import TensorRecord
from compression_core.training.lm import causal_lm_loss, lm_trainer

__all__ = ["evaluate_records", "is_lm_job", "lm_training"]


def is_lm_job(job: JobContext) -> bool:
    """A job whose data is a language model's token ids (not a classification data set)."""
    return job.data is None and job.other_data is not None and hasattr(job.other_data, "splits")


def lm_training(job: JobContext) -> tuple[TensorDataset, Callable[..., Any]]:
    """(the `train` rows as a dataset, the trainer `finetune` runs): the LM's loss, validation rows
    measured after each epoch when the upload has them."""
    splits = job.other_data.splits
    if "train" not in splits:
        raise InputError(
            "retrain: a language model retrains on the uploaded `train` token ids; there are none"
        )
    loss = job.lm_loss or causal_lm_loss
    return TensorDataset(splits["train"]), lm_trainer(loss, splits.get("validation"))


def evaluate_records(job: JobContext, records: Sequence[TensorRecord]) -> None:
    """`evaluation.after`: the test split's perplexity of the model holding the records' values."""
    state = job.model.state_dict()
    with torch.no_grad():
        for record in records:
            if record.name in state:
                state[record.name].copy_(record.reconstruct().to(state[record.name].dtype))
    after = job._evaluate(job.model)
    if after is not None:
        job.evaluation["after"] = after
