"""The flood limits' logic (ivr/telephony/guard.py) on a fake clock: no sockets, no server."""

import asyncio

import pytest

from ivr.serving.config import Settings, load_settings
from ivr.telephony.guard import (LogThrottle, SeenStreams, SocketLimits, SocketWatch, SourceRate, TokenBucket,
                                 trusted_proxies)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # refills to the burst, no more


def test_source_rate_is_per_source_and_off_at_zero():
    clock = Clock()
    rate = SourceRate(1.0, 2, clock=clock)
    assert [rate.allow("a") for _ in range(3)] == [True, True, False]
    assert rate.allow("b") and rate.allow("b")  # another source has its own bucket
    clock.now += 1.0
    assert rate.allow("a") and not rate.allow("a")
    off = SourceRate(0.0, 1, clock=clock)
    assert not off.enabled and all(off.allow("a") for _ in range(1000))


def test_source_rate_table_is_bounded():
    rate = SourceRate(1.0, 1, max_sources=100, clock=Clock())
    for i in range(10_000):
        rate.allow(f"10.0.{i // 256}.{i % 256}")
    assert len(rate._buckets) == 100


def test_socket_limits_total_and_waiting_per_source():
    limits = SocketLimits(max_open=4, max_waiting_per_source=2)
    assert limits.admit("a") is None and limits.admit("a") is None
    kind, why = limits.admit("a")
    assert kind == "waiting_per_source" and "limit 2" in why
    limits.started("a")  # one of them sent `start`: room for another that has not
    assert limits.admit("a") is None
    assert limits.admit("b") is None
    assert limits.admit("c")[0] == "sockets_total"
    assert (limits.open, limits.waiting) == (4, 3)
    limits.closed("a", waiting=False)
    limits.closed("a", waiting=True)
    limits.closed("a", waiting=True)
    limits.closed("b", waiting=True)
    assert (limits.open, limits.waiting) == (0, 0) and not limits._waiting


def test_socket_limits_zero_means_unlimited():
    limits = SocketLimits(max_open=0, max_waiting_per_source=0)
    assert all(limits.admit("a") is None for _ in range(500))


def test_seen_streams_remember_a_call_for_the_token_lifetime():
    clock = Clock()
    seen = SeenStreams(300, clock=clock)
    seen.add("CA1")
    assert "CA1" in seen and "CA2" not in seen
    clock.now += 299
    assert "CA1" in seen
    clock.now += 2
    assert "CA1" not in seen
    seen.add("CA2")  # adding prunes what expired
    assert len(seen) == 1


def test_log_throttle_logs_once_per_interval_and_counts_the_rest():
    clock = Clock()
    throttle = LogThrottle(10.0, clock=clock)
    assert throttle.allow("socket", "1.2.3.4") == 0
    assert [throttle.allow("socket", "1.2.3.4") for _ in range(5)] == [None] * 5
    assert throttle.allow("socket", "5.6.7.8") == 0  # another source is logged at once
    clock.now += 10
    assert throttle.allow("socket", "1.2.3.4") == 5


def test_log_throttle_keys_are_bounded():
    throttle = LogThrottle(10.0, max_keys=50, clock=Clock())
    for i in range(5000):
        throttle.allow("x", i)
    assert len(throttle._keys) == 50


class FakeSocket:
    def __init__(self, messages):
        self.messages = list(messages)

    async def receive(self):
        return self.messages.pop(0)


def test_socket_watch_records_last_message_and_a_too_big_close():
    clock = Clock()
    ws = FakeSocket([{"type": "websocket.receive", "text": "{}"}, {"type": "websocket.disconnect", "code": 1009}])
    watch = SocketWatch(ws, max_bytes=65536, clock=clock)
    clock.now += 5

    async def read_all():
        return [await ws.receive(), await ws.receive()]  # through the watch, as pipecat reads

    asyncio.run(read_all())
    assert watch.last_message == clock.now
    assert watch.close_code == 1009 and "65536-byte limit" in watch.problem
    assert SocketWatch(FakeSocket([]), clock=clock).problem is None


def test_socket_watch_wait_stalled_returns_after_the_quiet_time():
    ws = FakeSocket([])
    watch = SocketWatch(ws)

    async def run():
        return await asyncio.wait_for(watch.wait_stalled(0.2), 2)

    assert asyncio.run(run()) >= 0.2


def test_trusted_proxies_parse_and_reject_typos():
    assert trusted_proxies("127.0.0.1, ::1") == ["127.0.0.1", "::1"]
    assert trusted_proxies("10.0.0.1/8,172.16.0.0/12") == ["10.0.0.0/8", "172.16.0.0/12"]
    assert trusted_proxies("*") == ["*"]
    assert trusted_proxies("") == []
    with pytest.raises(ValueError, match="nginx"):
        trusted_proxies("127.0.0.1,nginx")


def test_settings_defaults_and_env():
    s = Settings()
    assert s.media_sockets_limit == s.max_calls + 20
    assert s.webhook_rate(signed=True) == 0.0 and s.webhook_rate(signed=False) == 5.0
    env = {"IVR_CONFIG": "/nonexistent.toml", "IVR_WEBHOOK_RATE_PER_SOURCE": "0.5", "IVR_MAX_MEDIA_SOCKETS": "7",
           "IVR_MEDIA_STALL_SECONDS": "2.5", "IVR_TRUSTED_PROXIES": "10.0.0.0/8"}
    s = load_settings(env=env)
    assert s.webhook_rate(signed=True) == 0.5 and s.media_sockets_limit == 7
    assert s.media_stall_seconds == 2.5 and s.trusted_proxy_list() == "10.0.0.0/8"


def test_trusted_proxies_default_to_uvicorns_variable_then_loopback():
    assert Settings().trusted_proxy_list(env={}) == "127.0.0.1,::1"
    assert Settings().trusted_proxy_list(env={"FORWARDED_ALLOW_IPS": "172.18.0.0/16"}) == "172.18.0.0/16"
    assert Settings(trusted_proxies="").trusted_proxy_list(env={"FORWARDED_ALLOW_IPS": "*"}) == ""
