"""`distill` on a Hugging Face causal LM (issue 23): the rules prune, then the student retrains on KL to the
teacher's logits (the uploaded float model, or an uploaded Hugging Face teacher)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compression_core.spec.parse import parse_spec

pytest.importorskip("transformers")

SPEC = {
    "model": {"hf": True},
    "data": {"upload": True},
    "outputs": {"dense": False},
    "rules": [
        {"select": {"name": "model.layers.*.mlp.*.weight"}, "steps": [{"type": "prune", "sparsity": 0.8}]}
    ],
    "distill": {
        "teacher": {"hf": True},
        "epochs": 4,
        "optimizer": "adam",
        "lr": 0.003,
        "batch_size": 8,
        "temperature": 2.0,
        "alpha": 1.0,
    },
}


@pytest.mark.parametrize("uploaded_teacher", [False, True])
def test_distilling_the_pruned_lm_to_a_teacher_recovers_perplexity(
    tiny_lm: dict, tmp_path: Path, one_thread: None, uploaded_teacher: bool
) -> None:
    from compression_core.job.pipeline import compress_file

    plain = {key: value for key, value in SPEC.items() if key != "distill"}
    pruned = compress_file(
        tiny_lm["folder"], parse_spec(json.dumps(plain)), tmp_path / "pruned", data_path=tiny_lm["tokens"]
    )
    inputs = {"teacher": tiny_lm["tar"]} if uploaded_teacher else None
    metrics = compress_file(
        tiny_lm["folder"],
        parse_spec(json.dumps(SPEC)),
        tmp_path / "kd",
        data_path=tiny_lm["tokens"],
        inputs=inputs,
    )
    section = metrics["distill"]
    before = metrics["evaluation"]["before"]
    assert section["teacher"]["perplexity"] == pytest.approx(before["perplexity"])  # the same float weights
    assert section["teacher"]["source"].startswith(
        "the uploaded teacher" if uploaded_teacher else "the uploaded model"
    )
    assert section["teacher"]["tokens"] == before["tokens"] == 128 * 63
    history = metrics["training"]["history"]
    assert (
        len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    )  # KL to the teacher falls
    after = metrics["evaluation"]["after"]["perplexity"]
    assert after < pruned["evaluation"]["after"]["perplexity"], (after, pruned["evaluation"]["after"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**SPEC, "rules": [], "wquant": {}}, "does not combine with wquant"),
        ({**SPEC, "distill": {**SPEC["distill"], "teacher": {"arch": "lenet5"}}}, "Hugging Face teacher"),
        (
            {
                "model": {"arch": "mlp"},
                "data": {"builtin": "digits"},
                "rules": [],
                "distill": {"teacher": {"hf": True}},
            },
            "Hugging Face teacher",
        ),
    ],
)
def test_distill_specs_that_cannot_run_on_a_language_model_are_refused(spec: dict, message: str) -> None:
    from compression_core.errors import SpecError

    with pytest.raises((SpecError, ValueError), match=message):
        parse_spec(json.dumps(spec))
