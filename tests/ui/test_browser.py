"""The web page in a real headless Chromium, against `mcs serve --demo` (auth disabled on loopback)."""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import httpx
import pytest

from tests.service.svc_helpers import write_model

from .conftest import Browser, Served

pytestmark = pytest.mark.slow

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_SPEC = {  # fails in the worker with an error that quotes the rule's name
    "version": 1,
    "rules": [
        {"name": HOSTILE_NAME, "select": {"name": "fc2.weight"}, "steps": [{"type": "prune", "keep": 10**6}]}
    ],
}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_the_demo_prints_where_to_look_in_a_browser(served: Served) -> None:
    links = dict(re.findall(r"^  (web page|this job|its report): +(\S+)$", served.output, re.MULTILINE))
    assert links == {
        "web page": f"{served.url}/",
        "this job": f"{served.url}/ui/jobs/{served.demo_job}",
        "its report": f"{served.url}/jobs/{served.demo_job}/artifacts/report.html",
    }
    for url in links.values():
        response = httpx.get(url)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")


def test_the_jobs_page_lists_jobs_and_escapes_what_users_wrote(
    served: Served, browser: Browser, tmp_path: Path
) -> None:
    model = write_model(tmp_path)
    with httpx.Client(base_url=served.url, timeout=30) as api:
        submitted = api.post(
            "/jobs",
            files={"model": (model.name, model.read_bytes())},
            data={"spec": json.dumps(HOSTILE_SPEC)},
        )
        assert submitted.status_code == 202, submitted.text
        hostile = submitted.json()["id"]
        deadline = time.monotonic() + 120
        while (job := api.get(f"/jobs/{hostile}").json())["state"] != "failed":
            assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.2)
    assert HOSTILE_NAME in job["error"]

    dom = browser.dom(f"{served.url}/")
    demo_row = re.search(rf'<tr id="job-{served.demo_job}"[^>]*>(.*?)</tr>', dom, re.DOTALL)
    assert demo_row, dom[:3000]
    row = demo_row.group(1)
    assert '<span class="badge succeeded">succeeded</span>' in row
    assert 'value="100"' in row and "34." in row  # progress bar full, the demo's ratio (34.4x)
    assert f'href="/jobs/{served.demo_job}/artifacts/report.html"' in row
    assert f'href="/jobs/{served.demo_job}/artifacts/model.bin"' in row
    assert f'id="job-{hostile}"' in dom and f'id="job-{hostile}-error"' in dom
    assert dom.index(f'id="job-{hostile}"') < dom.index(f'id="job-{served.demo_job}"')  # newest first
    # the rule name and the error are text, never markup: the page holds no script element at all
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script" not in dom.lower()

    shot = browser.screenshot(f"{served.url}/", tmp_path / "jobs.png")
    assert png_size(shot) == (1200, 1400)


def test_the_job_page_and_its_report(served: Served, browser: Browser, tmp_path: Path) -> None:
    dom = browser.dom(f"{served.url}/ui/jobs/{served.demo_job}")
    assert f'<h1>Job <span class="mono">{served.demo_job}</span></h1>' in dom
    assert "Open the report" in dom
    for name in ("model.pth", "model.bin", "metrics.json", "report.html"):
        assert f'<a href="/jobs/{served.demo_job}/artifacts/{name}">{name}</a>' in dom
    assert '<div class="k">ratio</div><div class="v">34.4×</div>' in dom

    report = browser.dom(f"{served.url}/jobs/{served.demo_job}/artifacts/report.html")
    assert "<h2>Per-layer</h2>" in report
    for layer in ("fc1.weight", "fc2.weight", "fc3.weight"):
        assert f'<td class="name">{layer}</td>' in report
    assert report.count('src="data:image/png;base64,') >= 3  # the plots are inside the page
    shot = browser.screenshot(
        f"{served.url}/jobs/{served.demo_job}/artifacts/report.html", tmp_path / "r.png"
    )
    assert png_size(shot) == (1200, 1400)

    missing = browser.dom(f"{served.url}/ui/jobs/00000000-0000-0000-0000-000000000000")
    assert "No such job" in missing


def test_the_api_docs_page_renders_in_a_browser_from_local_files(served: Served, browser: Browser) -> None:
    """Swagger UI runs under the page's CSP from the package's files (no CDN) and lists the routes."""
    dom = browser._run(f"{served.url}/docs", "--dump-dom", "--virtual-time-budget=15000").stdout
    assert 'class="swagger-ui' in dom
    assert "/jobs/{job_id}/artifacts" in dom  # rendered from /openapi.json by the bundle's script


def _add_wide_jobs(served: Served) -> tuple[str, list[str]]:
    """A search with three trials and a deployed job, each with every file such jobs publish and a long
    spec and error, written into the served instance's database (what the workers would have left)."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from mcs_common.db import make_engine
    from mcs_common.models import Job, utcnow

    sha, when = "ab" * 32, utcnow() - timedelta(hours=2)
    deployed = ["model.pth", "model.bin", "metrics.json", "report.html", "architecture.json", "model.onnx"]
    searched = ["model.pth", "model.bin", "metrics.json", "report.html", "search.csv", "pareto.png"]
    rule = {"name": "every convolution and linear layer: structured then shared", "select": {"name": "*"}}
    spec = {
        "model": {"arch": "resnet18"},
        "rules": [{**rule, "steps": [{"type": "structured", "sparsity": 0.5}]}],
    }
    engine = make_engine(f"sqlite:///{served.data_dir / 'mcs.db'}")
    with Session(engine) as session:

        def job(files: list[str], **fields: object) -> Job:
            row = Job(
                state="succeeded",
                progress_fraction=1.0,
                artifacts=[{"name": n, "size": 1234567, "sha256": sha} for n in files],
                metrics={"totals": {"ratio": 3.9}},
                created_at=when,
                started_at=when,
                finished_at=when,
                **fields,
            )
            session.add(row)
            session.flush()
            return row

        job(deployed + ["model.int8.onnx"], spec=spec, error=None)
        search = job(searched + ["sensitivity.png"], spec={**spec, "search": {"mode": "grid"}})
        trials = [
            job(
                [],
                spec=spec,
                parent_id=search.id,
                trial_index=i,
                trial={"parameters": {"rules.0.steps.0.sparsity": s}, "label": None},
            )
            for i, s in enumerate((0.3, 0.5, 0.7))
        ]
        session.commit()
        ids = str(search.id), [str(t.id) for t in trials]
    engine.dispose()
    return ids


def test_the_jobs_table_fits_1280_px_and_a_search_lists_its_trials(
    served: Served, browser: Browser, tmp_path: Path
) -> None:
    """Issue 20: the files column was cut off at 1280 px, and a search's page did not list its trials."""
    from matplotlib.image import imread

    search, trials = _add_wide_jobs(served)
    dom = browser.dom(f"{served.url}/")
    assert "model.int8.onnx</a>" in dom and "sensitivity.png</a>" in dom
    pixels = imread(browser.screenshot(f"{served.url}/", tmp_path / "jobs.png", size=(1280, 1000)))
    assert pixels.shape[1] == 1280
    # the table ends inside the page's 1240 px column: its right margin is bare page background
    # (#f6f8fa) from below the top bar down; a table wider than the window paints cells there
    margin = pixels[60:, 1244:, :3]
    assert abs(margin - [0xF6 / 255, 0xF8 / 255, 0xFA / 255]).max() < 0.02, "the table is wider than 1280 px"

    page = browser.dom(f"{served.url}/ui/jobs/{search}")
    assert "<h2>Trials</h2>" in page
    for index, (trial, sparsity) in enumerate(zip(trials, (0.3, 0.5, 0.7), strict=True)):
        row = re.search(rf'<tr id="trial-{index}"[^>]*>(.*?)</tr>', page, re.DOTALL)
        assert row, page[-3000:]
        assert f'href="/ui/jobs/{trial}"' in row.group(1)
        assert f"rules.0.steps.0.sparsity = {sparsity}" in row.group(1)
        assert '<span class="badge succeeded">succeeded</span>' in row.group(1)
