"""Pacing: the requests-per-minute limiter (on a fake clock), backoff with jitter, Retry-After."""
import email.utils

import pytest

from bench.api_teacher.pacing import RateLimiter, backoff_delay, parse_retry_after


def test_rate_limiter_spacing_and_pause():
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s
    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert slept == [0.5, 0.5]
    limiter.pause_until(10.0)
    limiter.acquire()
    assert slept[-1] == pytest.approx(9.0)
    RateLimiter(None, sleep=lambda s: pytest.fail("no limit, no sleep")).acquire()


def test_retry_after_and_backoff():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    assert parse_retry_after({"Retry-After": email.utils.formatdate(1_000_030, usegmt=True)}, now=1_000_000) == 30
    assert parse_retry_after({"Retry-After": email.utils.formatdate(999_000, usegmt=True)}, now=1_000_000) == 0
    assert parse_retry_after({"Retry-After": "soon"}) is None and parse_retry_after({}) is None
    assert all(4 <= backoff_delay(3, 1.0, 60.0) <= 8 for _ in range(50))
    assert all(2.5 <= backoff_delay(9, 1.0, 5.0) <= 5 for _ in range(50))
