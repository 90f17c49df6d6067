"""When and how long to wait before retrying a request that failed transiently."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; a server's Retry-After wins when it says more.

    `max_attempts` counts the first try, so 6 means up to 5 retries.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry `attempt` (1-based): uniform in [cap/2, cap], cap = base * 2**(attempt-1)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        r = (rng or random).random()
        return cap / 2 + r * cap / 2

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Delay before retry `attempt`; a Retry-After header (seconds or HTTP date) is honoured, capped."""
        wait = self.backoff(attempt)
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            wait = max(wait, min(hinted, self.max_retry_after))
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
