"""The plan: decided once from the spec and the source, as data; the stages follow it."""

from __future__ import annotations

import json

import pytest

from compression_core.errors import SpecError
from compression_core.job.plan import Mode, plan_job
from compression_core.sources import open_source
from compression_core.spec import parse_spec

FREE = {"rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "prune", "sparsity": 0.9}]}]}
MODEL = {"arch": "lenet5"}


def _plan(spec: dict, path: str = "model.pth", **kwargs):
    parsed = parse_spec(json.dumps(spec))
    return plan_job(parsed, open_source(path, parsed.model), **kwargs)


def test_a_data_free_spec_streams_on_the_workers_asked_for():
    plan = _plan(FREE, workers=3)
    assert plan.mode is Mode.streamed and plan.workers == 3
    assert [s.kind for s in plan.stages] == ["compress"] and plan.names("compress") == ("prune",)
    assert plan.source == {"kind": "state_dict", "input": "model.pth", "module": False, "streamable": True}


def test_a_data_aware_spec_runs_in_memory_with_every_stage_in_order():
    spec = {
        "model": MODEL,
        "data": {"builtin": "mnist-5k"},
        "distill": {"teacher": {"arch": "lenet5"}},
        "retrain": {"finetune": {"epochs": 1}},
        "int8": {},
        "rules": [
            {"select": {"name": "conv2.weight"}, "steps": [{"type": "structured", "sparsity": 0.5}]},
            {"select": {"name": "fc1.weight"}, "steps": [{"type": "quantize", "k": 4}]},
        ],
    }
    plan = _plan(spec, device="cuda:0")
    assert plan.mode is Mode.in_memory and plan.device == "cuda:0" and plan.workers is None
    assert [s.kind for s in plan.stages] == ["prepare", "structured", "retrain", "compress", "deploy"]
    assert plan.names("prepare") == ("distill",) and plan.names("retrain") == ("retrain",)
    assert plan.names("deploy") == ("int8",)
    assert json.loads(json.dumps(plan.to_dict()))["stages"][2] == {
        "stage": "retrain",
        "runs": ["retrain"],
        "note": "trains while compressing",
    }
    assert plan.lines()[0] == "model.pth (state_dict): in_memory on cuda:0"


def test_a_spec_naming_no_training_method_retrains_with_the_fallback():
    plan = _plan({"model": MODEL, **FREE})
    assert plan.names("retrain") == ("retrain",) and plan.runs("deploy")
    assert plan.stage("retrain").note.startswith("none named")
    assert _plan({"model": MODEL, "data": {"builtin": "mnist-5k"}, "lc": {}, **FREE}).names("retrain") == (
        "lc",
    )


def test_a_source_without_a_module_plans_no_deployment(monkeypatch):
    parsed = parse_spec(json.dumps({"model": MODEL, **FREE}))
    source = open_source("model.pth", parsed.model)
    monkeypatch.setattr(type(source), "has_module", property(lambda self: False))
    plan = plan_job(parsed, source)
    assert plan.mode is Mode.in_memory and not plan.runs("deploy") and plan.runs("retrain")


def test_an_outer_method_runs_the_job_itself():
    spec = {
        "model": MODEL,
        "data": {"builtin": "mnist-5k"},
        "search": {"mode": "grid", "parameters": {"rules.0.steps.0.sparsity": [0.5, 0.9]}},
        **FREE,
    }
    plan = _plan(spec)
    assert plan.mode is Mode.outer and [s.kind for s in plan.stages] == ["outer"]
    assert plan.names("outer") == ("search",)


def test_a_source_that_cannot_stream_is_compressed_in_memory(monkeypatch):
    parsed = parse_spec(json.dumps(FREE))
    source = open_source("model.pth")
    monkeypatch.setattr(type(source), "streamable", False)
    assert plan_job(parsed, source).mode is Mode.in_memory


def test_two_training_methods_are_refused_when_planning(monkeypatch):
    from compression_core.methods import registry

    lc = registry.model_method("lc")
    sws = registry.model_method("sws")
    spec = parse_spec(json.dumps({"model": MODEL, "data": {"builtin": "mnist-5k"}, **FREE}))
    monkeypatch.setattr(registry, "present_methods", lambda s: [(lc, lc.spec()), (sws, sws.spec())])
    with pytest.raises(SpecError, match="each compress the model"):
        plan_job(spec, open_source("model.pth", spec.model))
