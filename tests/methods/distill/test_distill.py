from __future__ import annotations

import json
from unittest import mock

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from compression_core.errors import InputError, SpecError
from compression_core.evaluate import evaluate
from compression_core.job.pipeline import compress_file
from compression_core.methods.distill.algorithm import distill, kd_loss, load_teacher
from compression_core.methods.distill.spec import DistillSpec
from compression_core.models import build_model
from compression_core.spec import Spec, parse_spec
from compression_core.training.finetune import RetrainConfig, train_epochs

TEACHER = {"arch": "mlp", "kwargs": {"sizes": [64, 128, 10]}}
STUDENT = {"arch": "mlp", "kwargs": {"sizes": [64, 8, 10]}}
TRAINING = {"epochs": 12, "lr": 0.05, "batch_size": 32}

pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one torch thread


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    model = build_model(TEACHER)
    train_epochs(model, digits.train, RetrainConfig(**TRAINING))
    return model


@pytest.fixture(scope="module")
def teacher_path(teacher, tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
    return path


def test_kd_loss_matches_a_hand_computation():
    zs = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    zt = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([1, 2])
    t, alpha = 2.0, 0.7
    ps = torch.softmax(zs / t, dim=1)
    pt = torch.softmax(zt / t, dim=1)
    kl = (pt * (pt.log() - ps.log())).sum(dim=1).mean()  # KL(p_t || p_s), averaged over the batch
    ce = -torch.log_softmax(zs, dim=1)[torch.arange(2), y].mean()
    expected = alpha * t**2 * kl + (1 - alpha) * ce
    assert float(kd_loss(zs, zt, y, temperature=t, alpha=alpha)) == pytest.approx(float(expected), rel=1e-6)
    assert float(kd_loss(zs, zs, y, temperature=t, alpha=1.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(kd_loss(zs, zt, y, temperature=t, alpha=0.0)) == pytest.approx(float(ce), rel=1e-6)


@pytest.mark.slow
def test_distilled_student_is_as_good_as_one_trained_alone(teacher, digits):
    teacher_error = evaluate(teacher, digits.test, timing=False).error
    errors = {}
    for kind in ("alone", "distilled"):
        torch.manual_seed(1)
        student = build_model(STUDENT)
        if kind == "alone":
            train_epochs(student, digits.train, RetrainConfig(**TRAINING))
        else:
            config = DistillSpec(teacher=TEACHER, temperature=4.0, alpha=0.9, **TRAINING)
            history = distill(student, teacher, digits.train, config, eval_set=digits.test)
            assert len(history) == TRAINING["epochs"] and history[-1].stage == "distill"
        errors[kind] = evaluate(student, digits.test, timing=False).error
    # a student with 8 hidden units: robust bound of 3 points (360 test digits, about 11 of them)
    assert errors["distilled"] <= errors["alone"] + 0.03, (errors, teacher_error)
    assert teacher_error < 0.06
    assert all(not p.requires_grad for p in teacher.parameters())  # frozen


def test_teacher_is_loaded_only_with_the_safe_loader(teacher_path, tmp_path, teacher):
    spec = DistillSpec(teacher=TEACHER)
    with mock.patch("torch.load", wraps=torch.load) as load:
        pth = tmp_path / "teacher.pth"
        torch.save(teacher.state_dict(), pth)
        loaded = load_teacher(spec, pth)
        assert all(call.kwargs.get("weights_only") is True for call in load.call_args_list)
        assert load.call_count >= 1
    assert torch.equal(loaded.fc1.weight, teacher.fc1.weight)
    hostile = tmp_path / "hostile.pth"
    torch.save({"fc1.weight": mock.sentinel.__class__}, hostile)  # a pickled class: refused
    with pytest.raises(InputError):
        load_teacher(spec, hostile)
    with pytest.raises(InputError, match="teacher"):
        load_teacher(DistillSpec(teacher=STUDENT), teacher_path)  # does not fit the architecture


def test_spec_validation():
    ok = {"model": STUDENT, "data": {"builtin": "digits"}, "distill": {"teacher": TEACHER}}
    spec = parse_spec(json.dumps(ok))
    assert spec.distill.temperature == 4.0 and spec.distill.alpha == 0.9
    with pytest.raises(SpecError, match="distill"):
        parse_spec(json.dumps({"model": STUDENT, "distill": {"teacher": TEACHER}}))
    with pytest.raises(SpecError, match="distill"):
        parse_spec(json.dumps({**ok, "sws": {}}))
    for bad in ({"alpha": 1.5}, {"temperature": 0}, {}, {"epochs": 0}):
        with pytest.raises(ValidationError):
            Spec.model_validate({**ok, "distill": {"teacher": TEACHER, **bad} if bad != {} else {}})


def test_distillation_through_the_pipeline(teacher_path, tmp_path, digits):
    torch.manual_seed(2)
    student_path = tmp_path / "student.safetensors"
    save_file({k: v.contiguous() for k, v in build_model(STUDENT).state_dict().items()}, str(student_path))
    rules = [{"select": {"name": "fc1.weight"}, "steps": [{"type": "quantize", "k": 8}]}]
    fields = {
        "rules": rules,
        "model": STUDENT,
        "data": {"builtin": "digits"},
        "distill": {"teacher": TEACHER, **TRAINING, "epochs": 4},
    }
    spec = parse_spec(json.dumps(fields))
    with pytest.raises(SpecError, match="teacher file"):
        compress_file(student_path, spec, tmp_path / "none")
    seen = []
    metrics = compress_file(
        student_path, spec, tmp_path / "out", teacher_path=teacher_path, progress=seen.append
    )
    d = metrics["distill"]
    assert len(d["history"]) == 4 and d["teacher"]["samples"] == 360
    assert d["teacher"]["params"] > d["student_params"] == 64 * 8 + 8 + 8 * 10 + 10
    # the student learned from the teacher: far better than its random start
    assert metrics["evaluation"]["before"]["error"] < d["student_error_before"] - 0.3
    assert metrics["evaluation"]["after"]["error"] < 0.5
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    assert any(p.stage == "distill" for p in seen)
    entry = next(e for e in metrics["tensors"] if e["name"] == "fc1.weight")
    assert (
        entry["method"] == "quantize" and entry["rel_error"] < 0.5
    )  # measured against the distilled student


def _rolled(teacher: torch.nn.Module) -> torch.nn.Module:
    """The same teacher with its logits permuted: class c's logit becomes class (c + 1) mod 10's."""
    rolled = build_model(TEACHER)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    last = [k for k in state if k.endswith(".weight")][-1].removesuffix(".weight")
    for suffix in (".weight", ".bias"):
        state[last + suffix] = torch.roll(state[last + suffix], shifts=1, dims=0)
    rolled.load_state_dict(state)
    return rolled


def test_the_student_learns_the_teachers_logits(teacher, digits):
    """Soft targets only (alpha 1): a student distilled from a teacher whose logits are permuted predicts
    the permuted classes, one distilled from the teacher itself the true ones; a loss that ignored the
    teacher would give the same student twice."""
    rolled = _rolled(teacher)
    x, y = digits.test.tensors
    with torch.no_grad():
        assert torch.equal(rolled(x).argmax(1), (teacher(x).argmax(1) + 1) % 10)
    config = DistillSpec(teacher=TEACHER, temperature=2.0, alpha=1.0, **TRAINING)
    predictions = {}
    for name, source in (("teacher", teacher), ("rolled", rolled)):
        torch.manual_seed(1)
        student = build_model(STUDENT)
        distill(student, source, digits.train, config)
        with torch.no_grad():
            predictions[name] = student(x).argmax(1)
    accuracy = {name: float((p == y).float().mean()) for name, p in predictions.items()}
    shifted = float((predictions["rolled"] == (y + 1) % 10).float().mean())
    assert accuracy["teacher"] > 0.8 and shifted > 0.8 and accuracy["rolled"] < 0.2, (accuracy, shifted)
