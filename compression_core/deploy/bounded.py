"""The preflight in a child process with a memory and a time limit (issue 21, item 2).

The preflight builds the named architecture and traces it on one sample; what that costs follows the spec
(`resnet18` at 3 x 2048 x 2048 peaked at 5.6 GB), not the upload, so a server must not run it in its own
process. `preflight_bounded` runs `python -m compression_core.deploy.bounded` with the spec and the upload's
tensor shapes (never the tensors): the child imports the library, then caps its own data segment
(RLIMIT_DATA, which counts anonymous memory: every tensor) at what it holds plus the byte budget
(`MCS_MAX_DECODE_BYTES`), runs `preflight`, and writes the report to a file the parent names. An allocation
past the cap fails in the child (a SpecError naming the budget here), a child past `timeout_s` is killed,
and the parent's memory does not move. One thread: the plan is the same, and children stay small.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compression_core.budget import ENV, byte_budget
from compression_core.errors import InputError, SpecError
from compression_core.memory_cap import memory_cap, refused_allocation

__all__ = ["preflight_bounded"]

log = logging.getLogger(__name__)

TIMEOUT_S = 300.0
_MEMORY = "memory"


def preflight_bounded(
    spec: Mapping[str, Any],
    shapes: Mapping[str, Sequence[int]] | None,
    *,
    memory_bytes: int | None = None,
    timeout_s: float = TIMEOUT_S,
    graph: Path | None = None,
) -> dict[str, Any]:
    """`preflight(Spec(spec), shapes)` in a child process: the report, or the SpecError / InputError the
    preflight raised; a SpecError when the child needs more than `memory_bytes` (default: the byte
    budget) or runs past `timeout_s`."""
    budget = byte_budget() if memory_bytes is None else memory_bytes
    root = str(Path(__file__).resolve().parents[2])  # the child imports this very library
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    request: dict[str, Any] = {
        "spec": dict(spec),
        "shapes": None if shapes is None else {k: list(v) for k, v in shapes.items()},
        "memory_bytes": budget,
        "graph": None if graph is None else str(graph),  # an upload carrying its own graph (ONNX)
    }
    with tempfile.TemporaryDirectory(prefix="mcs-preflight-") as folder:
        result_path = Path(folder) / "result.json"
        request["result"] = str(result_path)
        child = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
        try:
            _, stderr = child.communicate(json.dumps(request).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise SpecError(
                f"the preflight of {_arch(spec)} ran past {timeout_s:.0f} s and was stopped"
            ) from None
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
    if not isinstance(result, dict):  # killed (e.g. std::bad_alloc aborts) before it could answer
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        log.warning("preflight child exited with %s: %s", child.returncode, " | ".join(tail))
        raise SpecError(
            f"the preflight of {_arch(spec)} stopped (exit code {child.returncode}): it needs more than the "
            f"byte budget of {budget:,} bytes ({ENV}) to build and trace the model, or it crashed"
        )
    if "report" in result:
        report: dict[str, Any] = result["report"]
        return report
    message = str(result.get("message", ""))
    if result.get("error") == "input":
        raise InputError(message)
    if result.get("error") == _MEMORY:
        raise SpecError(
            f"the preflight of {_arch(spec)} needs more than the byte budget of {budget:,} bytes ({ENV}) to "
            f"build and trace the model ({message}); a smaller model.input_shape or architecture fits"
        )
    if result.get("error") == "failed":
        raise SpecError(f"the preflight could not build or trace {_arch(spec)}: {message}")
    raise SpecError(message)


def _arch(spec: Mapping[str, Any]) -> str:
    model = spec.get("model") or {}
    shape = model.get("input_shape")
    return repr(model.get("arch")) + (f" at input_shape {shape}" if shape else "")


def _child() -> int:
    request = json.loads(sys.stdin.read())
    result_path = Path(request["result"])
    import torch

    from compression_core.deploy.preflight import preflight
    from compression_core.spec import CHECKED_CONTEXT, Spec

    torch.set_num_threads(1)
    spec = Spec.model_validate(request["spec"], context=CHECKED_CONTEXT)
    shapes = request["shapes"]
    try:
        with memory_cap(int(request["memory_bytes"])):
            answer: dict[str, Any] = {
                "report": preflight(
                    spec,
                    None if shapes is None else {k: tuple(v) for k, v in shapes.items()},
                    None if request.get("graph") is None else Path(request["graph"]),
                )
            }
    except Exception as error:  # noqa: BLE001 - named in the answer; an allocation refused is the budget
        text = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
        if refused_allocation(error):  # Torch-Pruning's trace wraps what it hit in a SpecError
            answer = {"error": _MEMORY, "message": text}
        elif isinstance(error, InputError):
            answer = {"error": "input", "message": str(error)}
        elif isinstance(error, SpecError):
            answer = {"error": "spec", "message": str(error)[:500]}
        else:
            answer = {"error": "failed", "message": f"{type(error).__name__}: {text[:300]}"}
    result_path.write_text(json.dumps(answer), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child())
