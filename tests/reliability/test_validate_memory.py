"""`POST /jobs/validate` keeps model building and tracing out of the API process (issue 21, item 2): a
1.7 MB LeNet-5 file checked against `resnet18` at 3 x 1024 x 1024 with a structured step (on main: the API
built and traced it, +1.4 GB at this size, +5.6 GB at 2048) or `vit_l_16` (+1.1 GB) is refused from the
file's shapes against the architecture on the meta device, and a file that does fit is traced in a child
bounded by the byte budget. Measured on a real API process from the kernel's peak-RSS accounting (VmHWM),
reset before each request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from safetensors.torch import save_file

from compression_core.models import build_model

from .memory import peak_mib, reset_peak
from .stack import free_port, stack_env, start_api

BOUND_MIB = 100
BUDGET = 384 << 20  # the byte budget of the API (and its preflight child) in this test
STRUCTURED = [
    {"select": {"name": "layer1.*", "kind": "conv"}, "steps": [{"type": "structured", "sparsity": 0.5}]}
]


def _weights(folder: Path, arch: str) -> Path:
    path = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in build_model({"arch": arch}).state_dict().items()}, str(path))
    return path


def test_validate_never_builds_or_traces_in_the_api_process(tmp_path: Path) -> None:
    port = free_port()
    env = stack_env(data_dir=tmp_path / "data", auth="disabled", reaper_interval_s=0, max_decode_bytes=BUDGET)
    api = start_api(env, port, tmp_path / "api.log")
    lenet5, resnet18 = _weights(tmp_path, "lenet5"), _weights(tmp_path, "resnet18")
    cases = {
        "resnet18 at 3x1024x1024 on a LeNet-5 file": (
            lenet5,
            {"model": {"arch": "resnet18", "input_shape": [3, 1024, 1024]}, "rules": STRUCTURED},
        ),
        "vit_l_16 on a LeNet-5 file": (lenet5, {"model": {"arch": "vit_l_16"}}),
        "resnet18 at 3x2048x2048 over the byte budget": (
            resnet18,
            {"model": {"arch": "resnet18", "input_shape": [3, 2048, 2048]}, "rules": STRUCTURED},
        ),
    }
    growth: dict[str, float] = {}
    answers: dict[str, httpx.Response] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:

            def validate(model: Path, spec: object) -> httpx.Response:
                return client.post(
                    "/jobs/validate",
                    files={"model": (model.name, model.read_bytes())},
                    data={"spec": json.dumps(spec)},
                )

            warm = validate(lenet5, {"model": {"arch": "lenet5"}})  # imports, database, one child
            assert warm.status_code == 200, warm.text
            for label, (model, spec) in cases.items():
                before = reset_peak(api.pid)
                answers[label] = validate(model, spec)
                growth[label] = peak_mib(api.pid) - before
    finally:
        api.stop()
    for label, mib in growth.items():
        print(
            f"API peak RSS growth, /jobs/validate with {label}: {mib:.1f} MiB ({answers[label].status_code})"
        )
    misfit = answers["resnet18 at 3x1024x1024 on a LeNet-5 file"].json()
    assert misfit["status"] == 422, misfit
    assert any(
        e["field"] == "model" and "missing tensor bn1.weight" in e["message"] for e in misfit["errors"]
    )
    vit = answers["vit_l_16 on a LeNet-5 file"].json()  # 1.2 GB of parameters: sized on meta, refused
    assert vit["status"] == 422 and "over the byte budget" in vit["detail"], vit
    over = answers["resnet18 at 3x2048x2048 over the byte budget"]
    assert over.status_code == 422 and "byte budget" in over.json()["detail"], over.text
    assert all(mib < BOUND_MIB for mib in growth.values()), growth
