"""`mcs serve --demo`: a tiny job through the running service, end to end, printed for a person to copy.

This is a command's console output (not library code), so it prints.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

DEMO_SPEC = "deep-compression-lenet300.json"  # shipped with compression_core (examples/)


def demo_spec_path() -> Path:
    """The shipped example: Deep Compression's per-layer pruning and 6-bit codebooks for LeNet-300-100."""
    import compression_core

    return Path(compression_core.__file__).parent / "examples" / DEMO_SPEC


def make_demo_model(folder: Path) -> Path:
    """A small MLP (784-300-100-10, LeNet-300-100's shape) with seeded random weights, as safetensors."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    sizes = [(300, 784), (100, 300), (10, 100)]
    state = {}
    for i, (rows, cols) in enumerate(sizes, start=1):
        state[f"fc{i}.weight"] = torch.randn(rows, cols, generator=generator) / cols**0.5
        state[f"fc{i}.bias"] = torch.zeros(rows)
    path = folder / "lenet300.safetensors"
    save_file(state, str(path))
    return path


def wait_ready(client: httpx.Client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the service did not become ready")


def run_demo(base_url: str, data_dir: Path, timeout: float = 300.0) -> dict[str, Any]:
    """Submit, poll, download, verify and decode; return the final job document.

    The demo model is kept under `data_dir/demo/` so the printed curl session works as written."""
    from compression_core.format import decode_state_dict
    from compression_core.io import load_state_dict

    token = os.environ.get("MCS_TOKEN")  # auth enabled: the demo runs as this token's client
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with (
        httpx.Client(base_url=base_url, timeout=60.0, headers=headers) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        wait_ready(client)
        if client.get("/healthz").json().get("auth") == "enabled" and not token:
            raise RuntimeError(
                "auth is enabled (MCS_AUTH=enabled): set MCS_TOKEN to a token from `mcs token create` "
                "to run the demo, or run `mcs serve --demo` on 127.0.0.1 with MCS_AUTH unset"
            )
        (data_dir / "demo").mkdir(parents=True, exist_ok=True)
        model, spec = make_demo_model(data_dir / "demo"), demo_spec_path()
        print(f"demo: submitting {model} ({model.stat().st_size} bytes) with {spec.name} to {base_url}")
        with model.open("rb") as handle, spec.open("rb") as spec_handle:
            response = client.post(
                "/jobs", files={"model": (model.name, handle), "spec_file": (spec.name, spec_handle)}
            )
        response.raise_for_status()
        location = response.headers["Location"]
        deadline, shown = time.monotonic() + timeout, None
        while True:
            job = client.get(location).json()
            line = f"  {job['state']:<9} {job['progress']['fraction']:5.0%} {job['progress']['stage'] or ''}"
            if line != shown:
                print(line, flush=True)
                shown = line
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job['id']} still {job['state']} after {timeout} s")
            time.sleep(0.2)
        if job["state"] != "succeeded":
            raise RuntimeError(f"job {job['id']} {job['state']}: {job['error']}")
        for artifact in job["artifacts"]:
            target = folder / artifact["name"]
            with client.stream("GET", artifact["url"]) as stream:
                stream.raise_for_status()
                with target.open("wb") as out:
                    for chunk in stream.iter_bytes():
                        out.write(chunk)
        decoded = decode_state_dict(folder / "model.bin")
        dense = load_state_dict(folder / "model.pth")
        same = decoded.keys() == dense.keys() and all(decoded[k].equal(dense[k]) for k in dense)
        totals = job["metrics"]["totals"]
        print(
            f"demo: job {job['id']} succeeded: {totals['params']} parameters, model.bin "
            f"{(folder / 'model.bin').stat().st_size} bytes, ratio {totals['ratio']:.1f}x, "
            f"{totals['bits_per_weight']:.2f} bits/weight, "
            f"relative error {totals['rel_error_compressed']:.3f}; "
            f"decode(model.bin) == model.pth: {same}"
        )
        sha = next(a["sha256"] for a in job["artifacts"] if a["name"] == "model.bin")
        if not same:
            raise RuntimeError("decoded model.bin differs from model.pth")
        print(CURL_SESSION.format(base=base_url, model=model, spec=spec, id=job["id"], sha=sha))
        print(web_links(base_url, job))
        print(f"Serving at {base_url} (OpenAPI: {base_url}/docs); Ctrl-C to stop.", flush=True)
        return job


def web_links(base_url: str, job: dict[str, Any]) -> str:
    """Where a person looks next: the web page, this job's page and its report (when it has one)."""
    lines = [
        "Open in a browser:",
        f"  web page:   {base_url}/",
        f"  this job:   {base_url}/ui/jobs/{job['id']}",
    ]
    report = next((a["url"] for a in job["artifacts"] if a["name"] == "report.html"), None)
    if report:
        lines.append(f"  its report: {base_url}{report}")
    return "\n".join(lines)


CURL_SESSION = """
Try it yourself (copy and paste):
  curl -sS -i -F model=@{model} -F spec_file=@{spec} {base}/jobs   # 202; Location: /jobs/<id>
  curl -sS {base}/jobs/{id}                                  # state, progress, metrics
  curl -sS -OJ {base}/jobs/{id}/artifacts/model.bin          # also model.pth, metrics.json, report.html
  curl -sS -i -H 'If-None-Match: "{sha}"' {base}/jobs/{id}/artifacts/model.bin   # 304 if unchanged
  python -c "from compression_core.format import decode_state_dict as d; print(list(d('model.bin')))"
"""
