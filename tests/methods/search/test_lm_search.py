"""Searches on a Hugging Face causal LM (issue 23): a budget in perplexity points over `wquant` trials, and
the sensitivity per decoder layer; the tiny Llama of tests/sources/hf/tiny_lm.py, trained briefly here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compression_core.spec.parse import parse_spec

pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")


@pytest.fixture(scope="module")
def quick_lm(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    """150 steps (~15-40 s on one core): enough for 2-bit weights to move perplexity measurably."""
    from tests.sources.hf.tiny_lm import train_tiny_lm, write_token_data

    root = tmp_path_factory.mktemp("lm-search")
    folder = train_tiny_lm(root / "lm", steps=150)
    return {"folder": folder, "tokens": write_token_data(root / "tokens.npz", train_rows=64, test_rows=32)}


def _spec(wquant: dict, search: dict) -> dict:
    return {
        "model": {"hf": True},
        "data": {"upload": True},
        "rules": [],
        "outputs": {"dense": False},
        "wquant": wquant,
        "search": search,
    }


def _increase(trial: dict) -> float:
    return trial["validation_perplexity_after"] - trial["validation_perplexity_before"]


def test_budget_search_picks_the_smallest_checkpoint_within_the_perplexity_budget(
    quick_lm: dict, tmp_path: Path
) -> None:
    from compression_core.job.pipeline import compress_file

    budget = 0.05
    spec = _spec(
        {"bits": 4, "group_size": 32},
        {"mode": "grid", "parameters": {"wquant.bits": [2, 3, 4, 8]}, "max_perplexity_increase": budget},
    )
    metrics = compress_file(
        quick_lm["folder"], parse_spec(json.dumps(spec)), tmp_path, data_path=quick_lm["tokens"]
    )
    section = metrics["search"]
    trials = {t["parameters"]["wquant.bits"]: t for t in section["trials"]}
    assert sorted(trials) == [2, 3, 4, 8] and all(t["state"] == "succeeded" for t in trials.values())
    ratios = [trials[b]["ratio"] for b in (2, 3, 4, 8)]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] > 1.0, ratios  # fewer bits, smaller file
    for trial in trials.values():  # 13 of the 64 `train` rows held out (0.2): 13 x 63 tokens
        assert trial["validation_tokens"] == 13 * 63 and trial["tokens"] == 32 * 63
    within = [t for t in trials.values() if _increase(t) <= budget + 1e-12]
    best = max(within, key=lambda t: t["ratio"])
    assert section["best"] == best["index"] and section["budget"]["met"] is True
    assert section["budget"] == {
        **section["budget"],
        "measure": "perplexity",
        "max_perplexity_increase": budget,
    }
    # the chosen trial's outputs are the job's: its packed checkpoint, its ratio = upload / that checkpoint
    assert metrics["wquant"]["bits"] == best["parameters"]["wquant.bits"]
    shipped = (tmp_path / "model.quantized.tar").stat().st_size
    assert metrics["files"]["extra"]["model.quantized.tar"] == shipped
    assert best["ratio"] == pytest.approx(metrics["files"]["input_bytes"] / shipped)
    validation = metrics["search_trial"]["validation"]
    assert "13 of the 64 `train` rows" in validation["split"]
    assert metrics["evaluation"]["after"]["split"] == "test"
    header = (tmp_path / "search.csv").read_text().splitlines()[0]
    assert "validation_perplexity_after" in header and "validation_tokens" in header


def test_a_grid_searches_the_algorithm_beside_the_bits(quick_lm: dict, tmp_path: Path) -> None:
    """String fields in a grid (`wquant.algorithm`): RTN and GPTQ at 2 and 4 bits, one search."""
    from compression_core.job.pipeline import compress_file

    spec = _spec(
        {"group_size": 32, "calibration_rows": 16},
        {
            "mode": "grid",
            "parameters": {"wquant.algorithm": ["rtn", "gptq"], "wquant.bits": [2, 4]},
            "max_perplexity_increase": 10.0,
        },
    )
    metrics = compress_file(
        quick_lm["folder"], parse_spec(json.dumps(spec)), tmp_path, data_path=quick_lm["tokens"]
    )
    rows = {
        (t["parameters"]["wquant.algorithm"], t["parameters"]["wquant.bits"]): t
        for t in metrics["search"]["trials"]
    }
    assert sorted(rows) == [("gptq", 2), ("gptq", 4), ("rtn", 2), ("rtn", 4)]
    assert all(t["state"] == "succeeded" for t in rows.values())
    assert rows[("gptq", 2)]["ratio"] == pytest.approx(rows[("rtn", 2)]["ratio"], rel=1e-3)  # the same format
    assert rows[("gptq", 2)]["validation_perplexity_after"] != rows[("rtn", 2)]["validation_perplexity_after"]
    best = next(t for t in metrics["search"]["trials"] if t["index"] == metrics["search"]["best"])
    assert best["parameters"]["wquant.bits"] == 2  # the budget of 10 points holds every trial: the smallest
    assert metrics["wquant"]["algorithm"] == best["parameters"]["wquant.algorithm"]


def test_sensitivity_per_decoder_layer_reports_each_layers_perplexity_increase(
    quick_lm: dict, tmp_path: Path
) -> None:
    from compression_core.job.pipeline import compress_file

    spec = _spec(
        {"bits": 2, "group_size": 32},
        {"mode": "sensitivity", "values": [2, 4], "max_perplexity_increase": 0.0},
    )
    metrics = compress_file(
        quick_lm["folder"], parse_spec(json.dumps(spec)), tmp_path, data_path=quick_lm["tokens"]
    )
    section = metrics["search"]
    table = section["sensitivity"]
    assert table["layers"] == ["model.layers.0", "model.layers.1"] and table["values"] == [2, 4]
    assert table["step_field"] == "wquant.bits" and table["tokens"] == {
        "validation": 13 * 63,
        "test": 32 * 63,
    }
    layer_trials = [t for t in section["trials"] if t["label"] != "suggested"]
    assert len(layer_trials) == 4
    for trial in layer_trials:  # one layer quantized: the row and column of the table it fills
        row, column = (
            table["layers"].index(trial["label"]),
            table["values"].index(trial["parameters"]["value"]),
        )
        assert table["validation_perplexity_increase"][row][column] == pytest.approx(_increase(trial))
        assert trial["ratio"] < 2.0  # one of two layers quantized, the embeddings and lm_head float
    over = [
        layer for i, layer in enumerate(table["layers"]) if table["validation_perplexity_increase"][i][0] > 0
    ]
    assert table["kept_float"] == (over if len(over) < 2 else None)
    suggested = [t for t in section["trials"] if t["label"] == "suggested"]
    if len(over) < 2:  # the suggested spec ran: 2 bits everywhere but the layers over the budget
        assert section["best"] == suggested[0]["index"]
        assert metrics["wquant"]["ignore"] == ["lm_head", *(f"{layer}.*" for layer in over)]
        assert metrics["wquant"]["layers"] == 7 * (2 - len(over))
    else:
        assert suggested == [] and "nothing to suggest" in section["note"]
    assert (tmp_path / "sensitivity.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {
                "model": {"arch": "lenet5"},
                "data": {"builtin": "digits"},
                "rules": [],
                "search": {
                    "mode": "grid",
                    "parameters": {"default.dtype": [1]},
                    "max_perplexity_increase": 1,
                },
            },
            "causal LM",
        ),
        (
            _spec({}, {"mode": "budget", "parameters": {"wquant.bits": [2, 8]}, "min_top1_agreement": 0.9}),
            "max_perplexity_increase",
        ),
        (
            {
                **_spec({}, {"mode": "sensitivity", "values": [2], "max_perplexity_increase": 1}),
                "wquant": None,
            },
            "one decoder layer at a time",
        ),
        (_spec({}, {"mode": "sensitivity", "values": [2]}), "which layers stay float"),
        (
            _spec(
                {},
                {
                    "mode": "budget",
                    "parameters": {"wquant.algorithm": ["rtn", "gptq"]},
                    "max_perplexity_increase": 1,
                },
            ),
            "lists strings",
        ),
        (_spec({}, {"mode": "grid", "parameters": {"wquant.bits": ["four"]}}), "not a string field"),
        (_spec({}, {"mode": "sensitivity", "values": [9], "max_perplexity_increase": 1}), "bits"),
    ],
)
def test_lm_search_specs_that_cannot_run_are_refused(spec: dict, message: str) -> None:
    from compression_core.errors import SpecError

    with pytest.raises((SpecError, ValueError), match=message):
        parse_spec(json.dumps({k: v for k, v in spec.items() if v is not None}))


def test_admission_refuses_a_model_that_is_not_a_causal_lm_or_no_token_ids(
    quick_lm: dict, tmp_path: Path
) -> None:
    import shutil

    from compression_core.job.admission import admission_problems

    spec = parse_spec(
        json.dumps(
            _spec({}, {"mode": "budget", "parameters": {"wquant.bits": [2, 8]}, "max_perplexity_increase": 1})
        )
    )
    assert admission_problems(spec, quick_lm["folder"], quick_lm["tokens"]) == []
    missing = admission_problems(spec, quick_lm["folder"], None)
    assert [p.field for p in missing] == ["data"] and "none was sent: token ids" in missing[0].message
    classifier = tmp_path / "classifier"
    shutil.copytree(quick_lm["folder"], classifier)
    config = json.loads((classifier / "config.json").read_text())
    (classifier / "config.json").write_text(
        json.dumps({**config, "architectures": ["LlamaForSequenceClassification"]})
    )
    problems = admission_problems(spec, classifier, quick_lm["tokens"])
    assert [p.field for p in problems] == ["spec.data"]
    assert "LlamaForSequenceClassification" in problems[0].message
