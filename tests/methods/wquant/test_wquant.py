"""wquant as a job (library level): the spec's checks, and GPTQ against round-to-nearest on the tiny LM."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from compression_core.errors import SpecError
from compression_core.spec.parse import parse_spec

pytest.importorskip("transformers")


def _spec(**wquant: object) -> dict:
    return {
        "model": {"hf": True},
        "data": {"upload": True},
        "rules": [],
        "outputs": {"dense": False},
        "wquant": wquant,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rules": [], "model": {"arch": "lenet5"}, "wquant": {}}, "hf"),
        ({"rules": [], "model": {"hf": True}, "wquant": {"algorithm": "gptq"}}, "calibrates"),
        (_spec(symmetric=False, format="pack-quantized"), "int-quantized"),
        (_spec(format="packed"), "format"),
        (_spec(group_size=100), "group_size"),
        (_spec(bits=9), "bits"),
        ({"rules": [], "model": {"hf": True, "arch": "lenet5"}}, "exactly one"),
        ({"rules": [], "model": {"hf": True}, "data": {"upload": True}, "lc": {}}, "Hugging Face"),
    ],
)
def test_specs_wquant_cannot_run_are_refused_with_their_reason(spec: dict, message: str) -> None:
    with pytest.raises((SpecError, ValueError), match=message):
        parse_spec(json.dumps(spec))


@pytest.mark.slow
def test_gptq_loses_less_perplexity_than_round_to_nearest(tiny_lm: dict, tmp_path: Path) -> None:
    """At 2 bits, group 128, where the ordering is reliable at this size. Measured on this model (test split
    of 64 and 256 rows): RTN +0.73 / +0.85 perplexity, GPTQ -0.009 / -0.001; at 4 and 3 bits both stay
    within ~0.03 of the original and their order changes with the test rows and the training recipe."""
    from compression_core.job.pipeline import compress_file

    increases = {}
    for algorithm in ("rtn", "gptq"):
        spec = parse_spec(json.dumps(_spec(bits=2, group_size=128, algorithm=algorithm)))
        metrics = compress_file(tiny_lm["folder"], spec, tmp_path / algorithm, data_path=tiny_lm["tokens"])
        increases[algorithm] = metrics["wquant"]["perplexity"]["increase"]
        assert metrics["evaluation"]["after"]["tokens"] == 128 * 63
        with tarfile.open(tmp_path / algorithm / "model.quantized.tar") as tar:
            names = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
            assert sorted(tar.getnames()) == names
    assert increases["rtn"] > 0.1, increases  # 2 bits hurt, measurably
    assert increases["gptq"] < 0.5 * increases["rtn"], increases


@pytest.mark.slow
@pytest.mark.parametrize(
    ("wquant", "zero_points"),
    [
        ({"bits": 4, "group_size": 32, "symmetric": False}, True),  # int-quantized by default
        ({"bits": 8, "group_size": None, "symmetric": False, "algorithm": "gptq"}, True),
        ({"bits": 4, "group_size": 64, "format": "int-quantized"}, False),  # symmetric, unpacked
    ],
)
def test_an_int_quantized_checkpoint_loads_in_transformers_with_the_reported_perplexity(
    tiny_lm: dict, tmp_path: Path, wquant: dict, zero_points: bool
) -> None:
    """Asymmetric weights (a zero point per group) written as compressed-tensors `int-quantized`, the
    layout transformers 5.24 loads back (its asymmetric `pack-quantized` does not): the folder loads with
    `AutoModelForCausalLM.from_pretrained` and gives the perplexity the job reported on the test split."""
    import transformers
    from safetensors import safe_open

    from compression_core.job.pipeline import compress_file
    from compression_core.sources.hf.lm import load_tokens, perplexity

    spec = parse_spec(json.dumps(_spec(**wquant)))
    metrics = compress_file(tiny_lm["folder"], spec, tmp_path / "out", data_path=tiny_lm["tokens"])
    folder = tmp_path / "loaded"
    with tarfile.open(tmp_path / "out" / "model.quantized.tar") as tar:
        tar.extractall(folder, filter="data")
    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert config["format"] == "int-quantized"
    assert config["config_groups"]["group_0"]["weights"]["symmetric"] is not zero_points
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
        q = weights.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert q.dtype.is_floating_point is False and q.shape == (128, 128)
    assert ("model.layers.0.self_attn.q_proj.weight_zero_point" in names) is zero_points
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    rows = load_tokens(tiny_lm["tokens"], 256, 256).splits["test"]
    loaded = float(perplexity(model, rows)["perplexity"])
    reported = float(metrics["evaluation"]["after"]["perplexity"])
    assert abs(loaded - reported) <= 0.01 * reported, (loaded, reported)
