"""An ONNX upload as a model source through the pipeline: a data-free job writes model.pth (TinyNet's own
keys) and model.onnx (the uploaded graph with the decoded weights), which compute the same."""

from __future__ import annotations

import json

import numpy as np
import torch

from compression_core.deploy.onnx_export import ort_session
from compression_core.format import decode_state_dict
from compression_core.job.pipeline import compress_file
from compression_core.sources import open_source
from compression_core.spec import parse_spec
from tests.sources.onnx.tiny import TinyNet

QUANTIZE = {"rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "quantize", "k": 8}]}]}


def test_an_onnx_source_lists_the_exporting_models_tensors(tiny):
    path, model = tiny
    with open_source(path) as source:
        assert source.kind == "onnx" and source.has_module and not source.streamable
        assert source.input_signature() == (64,)
        assert [i.name for i in source.infos] == list(model.state_dict())
        assert torch.equal(source.load("head.weight"), model.state_dict()["head.weight"])
        arch = source.architecture()
        assert arch is not None and arch["source"] == "onnx"


def test_a_data_free_job_writes_model_pth_for_the_users_class_and_the_graph_with_its_weights(tiny, tmp_path):
    path, _ = tiny
    metrics = compress_file(path, parse_spec(json.dumps(QUANTIZE)), tmp_path / "out")
    out = tmp_path / "out"
    assert {"model.bin", "model.pth", "model.onnx", "metrics.json"} <= {p.name for p in out.iterdir()}
    pth = torch.load(out / "model.pth", weights_only=True)
    decoded = decode_state_dict(out / "model.bin")
    assert all(torch.equal(pth[k], decoded[k]) for k in pth)
    mine = TinyNet()
    mine.load_state_dict(pth, strict=True)
    assert len(torch.unique(pth["head.weight"])) <= 8  # quantized to 8 values
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = mine.eval()(x).numpy()
    got = ort_session(out / "model.onnx", 1).run(None, {"x": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert metrics["totals"]["ratio"] > 1


def test_a_job_says_which_names_could_not_be_mapped_back(tiny, tmp_path):
    import warnings

    _, model = tiny
    folded = tmp_path / "folded.onnx"  # the TorchScript exporter's default folds BatchNorms into convs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 64),), str(folded), dynamo=False)
    metrics = compress_file(folded, parse_spec(json.dumps(QUANTIZE)), tmp_path / "out")
    unmapped = metrics["source"]["unmapped_names"]
    assert metrics["source"]["kind"] == "onnx" and unmapped
    assert set(unmapped) <= set(torch.load(tmp_path / "out" / "model.pth", weights_only=True))


def test_the_original_onnx_row_measures_the_uploaded_graph_not_a_re_export(tiny, tmp_path):
    """The deployment table's `original (ONNX)` for an ONNX upload: its own graph (normalized to run on any
    batch), with the upload's initializers, which computes what the upload computes; other sources export."""
    import onnx

    from compression_core.sources.state_dict import StateDictSource

    path, model = tiny
    with open_source(path) as source:
        assert source.original_onnx(tmp_path / "original.onnx")
    graph = onnx.load(str(tmp_path / "original.onnx")).graph
    uploaded = {t.name for t in onnx.load(str(path)).graph.initializer}
    assert {t.name for t in graph.initializer if "." in t.name} == {n for n in uploaded if "." in n}
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    session = ort_session(tmp_path / "original.onnx", 1)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model.eval()(x).numpy(), rtol=1e-4, atol=1e-5)
    assert StateDictSource.original_onnx is not type(source).original_onnx
