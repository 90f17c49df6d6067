"""`distill` on a Hugging Face causal LM (issue 23): the teacher's logits are the target of the retraining
that follows the rules' compression (e.g. magnitude pruning of the linear layers), per token: alpha · T² ·
KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha) · the causal LM loss (`training/lm.py`).

The teacher is the job's `teacher` file when one is sent (a Hugging Face checkpoint, `"teacher": {"hf":
true}`), else the uploaded float model itself (frozen before anything is compressed). The student is the
uploaded model compressed by the rules, retrained with the compressed structure held: the spec's
`retrain.prune` / `retrain.finetune` phases when it gives them, else one `retrain.finetune` phase with
distill's own training fields (epochs, lr, optimizer, batch_size, ...).
"""

from __future__ import annotations

import copy
from typing import Any

from compression_core.errors import InputError, SpecError
from compression_core.job.context import JobContext
from compression_core.methods.base import CompressFn, Outcome
from compression_core.methods.distill.spec import DistillSpec
from compression_core.spec.fields import RetrainConfig
from compression_core.training.lm import kd_lm_loss

__all__ = ["run_lm"]


def _teacher(config: DistillSpec, job: JobContext) -> tuple[Any, str]:
    from compression_core.sources import open_source

    path = job.inputs.get("teacher")
    if path is None:
        return copy.deepcopy(job.model), "the uploaded model (float, before compression)"
    if not config.teacher.hf:
        raise SpecError(
            'distill: a language model\'s teacher is a Hugging Face checkpoint: "teacher": {"hf": true}'
        )
    try:
        with open_source(path, config.teacher) as source:
            teacher = source.module()
            vocab = source.config.get("vocab_size")  # type: ignore[attr-defined]
    except InputError as error:
        raise InputError(f"teacher: {error}") from None
    if vocab != job.source.config.get("vocab_size"):  # type: ignore[attr-defined]
        raise InputError(f"teacher: its vocabulary ({vocab}) is not the student's; KL needs the same tokens")
    return teacher, f"the uploaded teacher ({path.name})"


def run_lm(config: DistillSpec, job: JobContext, compress: CompressFn) -> Outcome:
    """Set the distillation loss for the retraining after the rules (`job.lm_loss`), and give `retrain` a
    finetune phase with distill's training fields when the spec has none."""
    if job.spec.method("wquant") is not None:
        raise SpecError(
            "distill: on a language model it retrains the rules' compressed weights; it does not combine "
            "with wquant"
        )
    lo, _ = job.span
    job.progress("distill", lo, "the teacher's perplexity")
    teacher, described = _teacher(config, job)
    teacher.to(job.device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    teacher_eval = job.source.evaluate(teacher, job.other_data, job.device)
    job.lm_loss = kd_lm_loss(teacher, temperature=config.temperature, alpha=config.alpha)
    retrain = job.spec.method("retrain")
    phases = retrain is not None and (retrain.prune is not None or retrain.finetune is not None)
    if not phases:
        from compression_core.methods.retrain.spec import RetrainSpec

        fields = {name: getattr(config, name) for name in RetrainConfig.model_fields}
        update = RetrainSpec(finetune=RetrainConfig(**fields))
        job.spec = job.spec.model_copy(update={"retrain": update})
    return Outcome(
        section={
            "config": config.model_dump(mode="json"),
            "teacher": {
                "source": described,
                "perplexity": teacher_eval["perplexity"],
                "tokens": teacher_eval["tokens"],
                "split": teacher_eval["split"],
                "params": sum(p.numel() for p in teacher.parameters()),
            },
            "student_params": sum(p.numel() for p in job.model.parameters()),
            "trains": "the rules' compressed weights, structure held, in retrain's phases"
            + ("" if phases else " (retrain.finetune from distill's training fields)"),
            "loss": "alpha * T^2 * KL(teacher || student) per token + (1 - alpha) * causal LM loss",
        }
    )
