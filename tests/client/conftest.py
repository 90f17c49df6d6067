from __future__ import annotations

from pathlib import Path

import pytest

from client import Client, RetryPolicy
from tests.client.fake_service import FakeService


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def fake_client(fake: FakeService, sleeps: list[float]) -> Client:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    client = Client(
        "http://mcs.test",
        token="s3cret",
        transport=fake.transport(),
        retry=RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=4.0),
        sleep=sleep,
        clock=lambda: clock[0],
    )
    yield client
    client.close()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(bytes(range(256)) * 1024)  # 256 KiB: several 64 KiB chunks
    return path
