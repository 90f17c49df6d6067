"""The upload check of an ONNX file: parsed, never executed; each bad file refused with the error the
service turns into its 4xx (InputError: 415, UnsupportedModel: 422), naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compression_core.errors import InputError, UnsupportedModel
from compression_core.sources import check_upload, open_source
from compression_core.sources.onnx.check import read_checked


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def _graph(nodes, initializers=(), opset: int = 17, shape=(1, 4)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _linear() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "fc.weight")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias")
    return _graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)], [w, b]
    )


def test_a_good_graph_passes_and_is_an_onnx_source(tmp_path):
    path = _save(_linear(), tmp_path / "m.onnx")
    check_upload(path)
    _, checked = read_checked(path)
    assert checked.opset == 17 and checked.input_shape == (1, 4) and checked.parameters == 15
    assert open_source(path).kind == "onnx"


def test_post_jobs_parses_an_upload_once_for_its_check_and_its_input_shape(tmp_path, monkeypatch):
    """`check_upload` and the admission's input shape read the protobuf once (a file of up to 2 GiB); a
    changed file is read again."""
    import compression_core.sources.onnx.check as check
    from compression_core.sources import kind_of

    parsed: list[Path] = []

    def counting(path):
        parsed.append(Path(path))
        return read_checked(path)

    monkeypatch.setattr(check, "read_checked", counting)
    path = _save(_linear(), tmp_path / "once.onnx")
    check_upload(path)
    sample_shape = kind_of(path, None).sample_shape
    assert sample_shape is not None and sample_shape(path) == (4,)
    assert parsed == [path]
    _save(_graph([helper.make_node("Relu", ["x"], ["y"])], shape=(1, 6)), path)  # a new upload, same name
    assert sample_shape(path) == (6,) and len(parsed) == 2


def test_an_unsupported_operator_is_refused_naming_the_node(tmp_path):
    node = helper.make_node("DFT", ["x"], ["y"], name="my_fft")
    path = _save(_graph([node]), tmp_path / "m.onnx")
    with pytest.raises(UnsupportedModel, match=r"node 'my_fft' \(op type DFT\).*cannot be converted.*export"):
        check_upload(path)


def test_a_truncated_protobuf_is_refused(tmp_path):
    data = _linear().SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(InputError) as error:
        check_upload(path)
    assert not isinstance(error.value, UnsupportedModel)
    assert "truncated" in str(error.value) or "not a readable ONNX" in str(error.value)


def test_external_data_pointing_outside_is_refused_whatever_it_points_at(tmp_path):
    model = _linear()
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../etc/passwd")
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(InputError, match=r"'fc.weight'.*external file \('../../../etc/passwd'\).*inside"):
        check_upload(path)


def test_a_2gb_tensor_declared_in_a_1kb_file_is_refused_before_anything_is_allocated(tmp_path):
    huge = TensorProto(
        name="fc.weight", data_type=TensorProto.FLOAT, dims=[1 << 19, 1 << 10], raw_data=b"\0" * 16
    )
    b = numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias")
    node = helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)
    path = _save(_graph([node], [huge, b]), tmp_path / "m.onnx")
    assert path.stat().st_size < 1024
    with pytest.raises(
        InputError, match=r"'fc.weight': declares shape \[524288, 1024\] \(2,147,483,648 bytes\)"
    ):
        check_upload(path)


def test_a_graph_with_a_loop_is_refused(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Identity", ["x"], ["s"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
        ],
    )
    trip = numpy_helper.from_array(np.array(3, np.int64), "trip")
    cond = numpy_helper.from_array(np.array(True), "cond")
    loop = helper.make_node("Loop", ["trip", "cond"], ["y"], name="the_loop", body=body)
    path = _save(_graph([loop], [trip, cond]), tmp_path / "m.onnx")
    with pytest.raises(UnsupportedModel, match=r"node 'the_loop' \(op type Loop\): control flow"):
        check_upload(path)


def test_an_opset_out_of_range_and_two_inputs_are_refused(tmp_path):
    old = _linear()
    old.opset_import[0].version = 6
    with pytest.raises(UnsupportedModel, match="opset 6"):
        check_upload(_save(old, tmp_path / "old.onnx"))
    two = _linear()
    two.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4]))
    with pytest.raises(UnsupportedModel, match="2 inputs"):
        check_upload(_save(two, tmp_path / "two.onnx"))
