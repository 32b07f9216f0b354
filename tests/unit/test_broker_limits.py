"""The pure limit policies: token buckets, per-address admission, per-client rates (time is an
argument, so every case is exact)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wrenmq.broker import limits
from wrenmq.broker.limits import MAX_CREDIT, WARN_INTERVAL, ClientLimiter, IpLimits, TokenBucket

# ---------------------------------------------------------------------------------------------
# TokenBucket


def test_bucket_starts_full_and_refuses_without_taking() -> None:
    b = TokenBucket(2.0, 3.0, now=100.0)
    assert [b.try_take(100.0) for _ in range(4)] == [True, True, True, False]
    assert b.tokens == 0.0  # the refusal took nothing
    assert not b.try_take(100.49)  # 0.98 tokens
    assert b.try_take(100.5)


def test_bucket_refill_is_capped_at_burst() -> None:
    b = TokenBucket(10.0, 5.0, now=0.0)
    b.take(0.0, 5.0)
    assert b.refill(1000.0) == 5.0
    assert b.full(1000.0)


def test_bucket_take_goes_into_debt_and_says_how_long_it_lasts() -> None:
    b = TokenBucket(4.0, 4.0, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [0.0] * 4
    assert b.take(0.0) == pytest.approx(0.25)  # one token short at 4 a second
    assert b.take(0.0, 2.0) == pytest.approx(0.75)
    assert not b.full(0.75)
    assert b.take(0.75) == pytest.approx(0.25)  # the debt was repaid; one more is short again


def test_bucket_ignores_time_going_backwards() -> None:
    b = TokenBucket(1.0, 1.0, now=10.0)
    assert b.try_take(10.0)
    assert not b.try_take(5.0)
    assert b.stamp == 10.0


def test_bucket_credit_rises_above_the_burst_and_stays_until_used() -> None:
    b = TokenBucket(10.0, 10.0, now=0.0)
    b.take(0.0, 10.0)
    b.credit(3.0, 3.0)  # held for 3 s: 30 tokens refilled (capped at 10) plus 30 credited
    assert b.tokens == pytest.approx(40.0)
    assert b.refill(100.0) == pytest.approx(40.0)  # refilling never cuts a credit
    assert b.take(100.0, 40.0) == 0.0
    assert b.take(100.0) == pytest.approx(0.1)
    b.credit(100.0, 1000.0)
    assert b.tokens == pytest.approx(10.0 + MAX_CREDIT * 10.0)  # capped


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_bucket_needs_a_positive_rate_and_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


# ---------------------------------------------------------------------------------------------
# IpLimits


def test_ip_limits_disabled_by_zero() -> None:
    assert not IpLimits(max_connections=0, rate=0.0).enabled
    assert IpLimits(max_connections=1, rate=0.0).enabled
    assert IpLimits(max_connections=0, rate=0.5).enabled


def test_max_connections_per_address_and_release() -> None:
    ip = IpLimits(max_connections=2, rate=0.0)
    assert ip.admit("10.0.0.1", 0.0) is None
    assert ip.admit("10.0.0.1", 0.0) is None
    refusal = ip.admit("10.0.0.1", 0.0)
    assert refusal is not None and "max_connections_per_ip" in refusal
    assert ip.admit("10.0.0.2", 0.0) is None  # another address has its own count
    assert ip.open_connections("10.0.0.1") == 2
    ip.release("10.0.0.1")
    assert ip.admit("10.0.0.1", 0.0) is None
    for _ in range(2):
        ip.release("10.0.0.1")
    ip.release("10.0.0.2")
    assert ip.tracked() == 0  # nothing left behind


def test_connection_rate_burst_is_max_of_one_and_rate() -> None:
    ip = IpLimits(max_connections=0, rate=3.0)
    assert [ip.admit("a", 0.0) is None for _ in range(4)] == [True, True, True, False]
    assert ip.admit("a", 1 / 3) is None
    slow = IpLimits(max_connections=0, rate=0.5)  # one every two seconds, burst of one
    assert slow.admit("b", 0.0) is None
    refusal = slow.admit("b", 1.9)
    assert refusal is not None and "connection_rate_per_ip" in refusal
    assert slow.admit("b", 2.0) is None


def test_refused_by_count_takes_no_rate_token() -> None:
    ip = IpLimits(max_connections=1, rate=1.0)
    assert ip.admit("a", 0.0) is None
    assert ip.admit("a", 0.5) is not None  # refused by the count
    ip.release("a")
    assert ip.admit("a", 1.0) is None  # the token that refilled is still there


def test_should_warn_once_a_minute_per_address() -> None:
    ip = IpLimits(max_connections=1, rate=0.0)
    assert ip.should_warn("a", 0.0)
    assert not ip.should_warn("a", 1.0)
    assert ip.should_warn("b", 1.0)
    assert not ip.should_warn("a", WARN_INTERVAL - 0.1)
    assert ip.should_warn("a", WARN_INTERVAL)


def test_prune_forgets_full_buckets_and_old_warnings() -> None:
    ip = IpLimits(max_connections=0, rate=1.0)
    for n in range(1000):
        addr = f"10.0.{n // 256}.{n % 256}"
        ip.admit(addr, 0.0)
        ip.release(addr)
        ip.should_warn(addr, 0.0)
    assert ip.tracked() == 1000
    ip.prune(0.5)
    assert ip.tracked() == 1000  # buckets still refilling, warnings recent
    ip.prune(WARN_INTERVAL)
    assert ip.tracked() == 0


# ---------------------------------------------------------------------------------------------
# ClientLimiter


def test_client_limiter_unlimited_rates_have_no_bucket() -> None:
    limiter = ClientLimiter(message_rate=0.0, byte_rate=0, now=0.0)
    assert limiter.messages is None and limiter.bytes is None
    assert limiter.publish(0.0) == 0.0
    assert limiter.received(10**9, 0.0) == 0.0


def test_client_limiter_message_and_byte_debt() -> None:
    limiter = ClientLimiter(message_rate=10.0, byte_rate=1000, now=0.0)
    assert [limiter.publish(0.0) for _ in range(10)] == [0.0] * 10
    assert limiter.publish(0.0) == pytest.approx(0.1)
    assert limiter.received(1000, 0.0) == 0.0
    assert limiter.received(500, 0.0) == pytest.approx(0.5)
    fractional = ClientLimiter(message_rate=0.5, byte_rate=0, now=0.0)
    assert fractional.publish(0.0) == 0.0  # a burst of at least one
    assert fractional.publish(0.0) == pytest.approx(2.0)


def test_client_limiter_pardon_credits_both_buckets() -> None:
    limiter = ClientLimiter(message_rate=10.0, byte_rate=100, now=0.0)
    for _ in range(30):  # 3 s of messages sent while the broker was not reading
        limiter.publish(2.0)
    assert limiter.messages is not None and limiter.messages.tokens < 0
    fresh = ClientLimiter(message_rate=10.0, byte_rate=100, now=0.0)
    fresh.pardon(3.0, 3.0)  # ... but the broker says it held the client for those 3 s
    assert [fresh.publish(3.0) for _ in range(40)] == [0.0] * 40
    assert fresh.received(400, 3.0) == 0.0
    assert fresh.publish(3.0) > 0


def test_limits_module_is_pure() -> None:
    tree = ast.parse(Path(limits.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__"}
