"""The pipeline hook of distillation: a spec with `distill` trains the student `model` from the uploaded
`teacher` file first ("prepare" stage), then the rules (and `retrain`) compress the distilled student."""

from __future__ import annotations

from compression_core.errors import SpecError
from compression_core.evaluate import evaluate
from compression_core.job.context import JobContext
from compression_core.methods.base import CompressFn, Outcome
from compression_core.methods.distill.algorithm import distill, load_teacher
from compression_core.methods.distill.spec import DistillSpec
from compression_core.training.loop import EpochStats

__all__ = ["run"]


def run(config: DistillSpec, job: JobContext, compress: CompressFn) -> Outcome:
    """The pipeline hook: distill `job.model` from the uploaded teacher; returns the `distill` section.

    Afterwards the job's reference weights (`job.original`, what `rel_error` is measured against) are the
    distilled student, so the compression metrics describe the rules' compression only.
    """
    if job.data is None and job.other_data is not None:  # a causal LM's token ids (distill/lm.py)
        from compression_core.methods.distill.lm import run_lm

        return run_lm(config, job, compress)
    data, teacher_path = job.data, job.inputs.get("teacher")
    assert data is not None  # the spec validator requires model and data with distill
    if teacher_path is None:
        raise SpecError("distill: the job has no teacher file (upload the teacher's state dict as `teacher`)")
    lo, hi = job.span
    job.progress("distill", lo, "loading the teacher")
    teacher = load_teacher(config, teacher_path)
    teacher_eval = evaluate(teacher, data.eval_set, device=job.device, timing=False).to_dict()
    student_before = evaluate(job.model, data.eval_set, device=job.device, timing=False).to_dict()
    reported = data.info(data.eval_split)

    def on_epoch(stats: EpochStats) -> None:
        err = (
            ""
            if stats.validation_error is None
            else f", validation error {100 * stats.validation_error:.2f}%"
        )
        job.progress(
            "distill",
            lo + (hi - lo) * stats.epoch / stats.epochs,
            f"epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.4f}{err}",
        )

    history = distill(
        job.model,
        teacher,
        data.train,
        config,
        eval_set=data.choice_set,  # per-epoch errors on validation; the test split is only reported
        device=job.device,
        on_epoch=on_epoch,
        should_cancel=job.should_cancel,
    )
    job.original = {k: v.detach().cpu().clone() for k, v in job.model.state_dict().items()}
    return Outcome(
        section={
            "config": config.model_dump(mode="json"),
            "teacher": {
                "error": teacher_eval["error"],
                "samples": teacher_eval["samples"],
                **reported,
                "params": sum(p.numel() for p in teacher.parameters()),
            },
            "student_params": sum(p.numel() for p in job.model.parameters()),
            "student_error_before": student_before["error"],
            "student_error_before_split": reported,
            "history": [s.to_dict() for s in history],
            "history_split": data.info(data.choice_split),
        }
    )
