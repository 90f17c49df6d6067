from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from client.retry import RetryPolicy, parse_retry_after


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0  # in the past: no wait
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        for _ in range(50):
            assert cap / 2 <= policy.backoff(attempt, rng) <= cap


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, max_retry_after=60.0)
    assert policy.delay(1, "12") == 12.0
    assert policy.delay(1, "100000") == 60.0
    assert policy.delay(1, "0") <= 0.1


@pytest.mark.parametrize("attempt", [1, 5])
def test_delay_without_hint_is_backoff(attempt: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    cap = min(30.0, 0.5 * 2 ** (attempt - 1))
    assert cap / 2 <= policy.delay(attempt, None) <= cap
