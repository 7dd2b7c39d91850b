"""Pacing of requests: a requests-per-minute limiter shared by all worker threads, exponential
backoff with jitter, and the server's Retry-After (seconds or an HTTP date)."""
from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping


class RateLimiter:
    """Spaces request starts at least 60/rpm seconds apart (rpm None: no spacing). A 429 with
    Retry-After pauses every thread, not only the one that got it (`pause_until`)."""

    def __init__(self, requests_per_minute: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._next = max(self._next, when)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random = random) -> float:
    """Delay before retry `attempt` (0-based): base·2^attempt capped at max_s, "equal jitter"
    (half fixed, half random) so threads that failed together do not retry together."""
    cap = min(max_s, base_s * 2 ** attempt)
    return cap / 2 + rng.uniform(0, cap / 2)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from retry-after-ms, or Retry-After as seconds or an HTTP date; None if
    absent or unreadable. `now` is a Unix time (tests pass one)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
