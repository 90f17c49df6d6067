"""The layers' import rules, read from the source: the service and the worker meet only through
`mcs_common` (and the broker, by task name); the shared package and the library import neither."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import imports_of, violations


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("service", {"worker"}),
        ("worker", {"service"}),
        ("mcs_common", {"service", "worker", "client", "mcs"}),
        ("compression_core", {"service", "worker", "client", "mcs", "mcs_common"}),
    ],
)
def test_layer_does_not_import(package: str, forbidden: set[str]) -> None:
    assert violations(package, forbidden) == []


def test_the_check_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    """The rule catches the kinds of import the old layout had (a function-level one included)."""
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "probe.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from worker.app import app\n"
        "def f():\n    import worker.main\n"
        "from . import settings_like\n"
    )
    assert violations("service", {"worker"}, tmp_path) == [
        "service/probe.py:3 imports worker.app",
        "service/probe.py:3 imports worker.app.app",
        "service/probe.py:5 imports worker.main",
    ]
    assert "service.settings_like" in [name for _, _, name in imports_of("service", tmp_path)]


def test_dispatch_sends_the_task_by_name_the_worker_registers() -> None:
    """The one thing the two sides agree on besides the database: the tasks' names."""
    import inspect

    from mcs_common import broker
    from worker.tasks import advance_search, run_job

    assert run_job.name == broker.TASK_RUN_JOB
    assert advance_search.name == broker.TASK_ADVANCE_SEARCH
    sent = [name for path, _, name in imports_of("service") if path.name == "dispatch.py"]
    assert {"mcs_common.broker.send_job", "mcs_common.broker.send_advance"} <= set(sent)
    for sender, task in ((broker.send_job, "TASK_RUN_JOB"), (broker.send_advance, "TASK_ADVANCE_SEARCH")):
        source = inspect.getsource(sender)
        assert "send_task(" in source and task in source, sender.__name__
