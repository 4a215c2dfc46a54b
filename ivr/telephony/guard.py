"""Limits on who may open what at the Twilio endpoints, and a watch on each media socket (#9).

Where the cost is, and so where the limits are:

* An unsigned or wrongly signed webhook costs one HMAC and gets 403. A flood of them costs
  log lines, so their warnings are thinned per source (`LogThrottle`), not the requests.
* A signed webhook comes from Twilio, and Twilio may send every call of a number from one of a
  few shared addresses: a per-source limit on signed webhooks would throttle real calls and
  guards nothing a signature does not (nobody else can make one without the auth token). So
  the per-source webhook rate (`SourceRate`) is on by default only where webhooks are not
  signature-checked (dev mode: anyone can start calls); an operator may turn it on for signed
  ones too. The total is `max_calls`, checked again when a stream starts.
* A media websocket is what costs: a file descriptor, a coroutine, and once it starts, a
  pipeline and model time. Anyone can open one, token or not. So sockets are capped in total
  and, while they have not sent `start` yet, per source (`SocketLimits`). Twilio sends `start`
  within milliseconds of connecting, so the per-source cap on waiting sockets never bites it.
* Once started, Twilio sends a media frame every 20 ms, silence included: a socket quiet for
  seconds is stalled (`SocketWatch.wait_stalled`). A message over `MAX_MESSAGE_BYTES` is not
  Twilio's: the server (uvicorn's ws_max_size) closes that socket with 1009.

The source is the peer address; behind a reverse proxy uvicorn rewrites it from
X-Forwarded-For, but only for peers in IVR_TRUSTED_PROXIES (`trusted_proxies`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter, OrderedDict
from typing import Callable

MAX_MESSAGE_BYTES = 64 * 1024  # a 20 ms media frame is ~300 bytes of JSON and a `start` < 2 KB

Clock = Callable[[], float]


class TokenBucket:
    """`burst` requests at once, then `rate` a second."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst = rate, max(1.0, burst)
        self.tokens, self.updated = self.burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SourceRate:
    """A token bucket per source. The table is bounded (least recently seen sources go first)
    so that many addresses cannot grow it without end; a source pushed out starts full again,
    which costs at most one more burst from it."""

    def __init__(self, rate: float, burst: float, *, max_sources: int = 10_000, clock: Clock = time.monotonic):
        self.rate, self.burst = rate, burst
        self.max_sources = max_sources
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, source: str) -> bool:
        if not self.enabled:
            return True
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        return bucket.take(now)


class SocketLimits:
    """Open media sockets: in total, and per source while they have not sent `start`."""

    def __init__(self, max_open: int, max_waiting_per_source: int):
        self.max_open = max_open
        self.max_waiting_per_source = max_waiting_per_source
        self.open = 0
        self._waiting: Counter[str] = Counter()

    @property
    def waiting(self) -> int:
        return sum(self._waiting.values())

    def admit(self, source: str) -> tuple[str, str] | None:
        """Count a new socket in (as waiting for `start`), or say why not: (kind, words)."""
        if self.max_open > 0 and self.open >= self.max_open:
            return "sockets_total", f"{self.open} media sockets open (limit {self.max_open})"
        if self.max_waiting_per_source > 0 and self._waiting[source] >= self.max_waiting_per_source:
            return "waiting_per_source", (f"{self._waiting[source]} sockets from this source have not sent `start` "
                                          f"(limit {self.max_waiting_per_source})")
        self.open += 1
        self._waiting[source] += 1
        return None

    def started(self, source: str) -> None:
        self._unwait(source)

    def closed(self, source: str, *, waiting: bool) -> None:
        self.open -= 1
        if waiting:
            self._unwait(source)

    def _unwait(self, source: str) -> None:
        self._waiting[source] -= 1
        if self._waiting[source] <= 0:
            del self._waiting[source]


class SocketSlot:
    """One admitted socket's place in `SocketLimits`: waiting until `started()`, given back by
    `release()` (in a `finally`), whichever way the socket ends."""

    def __init__(self, limits: SocketLimits, source: str):
        self.limits, self.source = limits, source
        self.waiting = True

    def started(self) -> None:
        if self.waiting:
            self.waiting = False
            self.limits.started(self.source)

    def release(self) -> None:
        self.limits.closed(self.source, waiting=self.waiting)


class SeenStreams:
    """Calls whose stream has started, remembered as long as their stream token is valid: a
    token replayed after its call ended must not start the call again."""

    def __init__(self, ttl: float, *, clock: Clock = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def add(self, call_sid: str) -> None:
        now = self.clock()
        self._until.pop(call_sid, None)
        self._until[call_sid] = now + self.ttl
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)

    def __contains__(self, call_sid: str) -> bool:
        until = self._until.get(call_sid)
        return until is not None and until > self.clock()

    def __len__(self) -> int:
        return len(self._until)


class LogThrottle:
    """At most one log line per key (what was refused, from where) every `interval` seconds;
    the next line says how many were not logged. A flood must not become a flood of logs."""

    def __init__(self, interval: float = 10.0, *, max_keys: int = 1000, clock: Clock = time.monotonic):
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self._keys: OrderedDict[tuple, list] = OrderedDict()  # key -> [last logged at, suppressed]

    def allow(self, *key) -> int | None:
        """None: do not log this one. Otherwise log it; the number is how many were skipped."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return None
        skipped = entry[1] if entry is not None else 0
        self._keys[key] = [now, 0]
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return skipped


def suffix(skipped: int) -> str:
    return f" ({skipped} more like it not logged)" if skipped else ""


#: A media stream sends 50 messages a second (20 ms frames); after a network hiccup TCP may hand
#: over seconds of them at once. Past this rate and burst, the other side is flooding.
MAX_MESSAGES_PER_S = 150
MAX_MESSAGE_BURST = 500


class SocketWatch:
    """Sits on a websocket's `receive`: when the last message came, how the socket closed, and
    whether the other side floods it (then the socket reads as closed, 1008)."""

    def __init__(self, websocket, *, max_bytes: int = MAX_MESSAGE_BYTES, max_rate: float = MAX_MESSAGES_PER_S,
                 burst: float = MAX_MESSAGE_BURST, clock: Clock = time.monotonic):
        self.max_bytes = max_bytes
        self.clock = clock
        self.last_message = clock()
        self.close_code: int | None = None
        self.flooded = False
        self._rate = TokenBucket(max_rate, burst, self.last_message) if max_rate > 0 else None
        self._receive = websocket.receive
        websocket.receive = self.receive  # pipecat's transport reads through it as well

    async def receive(self) -> dict:
        if self.flooded:
            return {"type": "websocket.disconnect", "code": 1008}
        message = await self._receive()
        self.last_message = self.clock()
        if message.get("type") == "websocket.disconnect":
            self.close_code = message.get("code")
        elif self._rate is not None and not self._rate.take(self.last_message):
            self.flooded, self.close_code = True, 1008
            return {"type": "websocket.disconnect", "code": 1008}
        return message

    @property
    def problem(self) -> str | None:
        """Why the socket closed, when that was the caller's side breaking the protocol."""
        if self.close_code == 1009:
            return f"a message over the {self.max_bytes}-byte limit (websocket closed 1009)"
        if self.flooded:
            return (f"over {self._rate.rate:g} messages a second, burst {self._rate.burst:g} "
                    "(a media stream sends 50): flooding")
        return None

    async def wait_stalled(self, seconds: float) -> float:
        """Return once nothing has arrived for `seconds`; the quiet time so far."""
        while True:
            quiet = self.clock() - self.last_message
            if quiet >= seconds:
                return quiet
            await asyncio.sleep(seconds - quiet + 0.01)


def trusted_proxies(value: str) -> list[str]:
    """Check IVR_TRUSTED_PROXIES (comma-separated addresses or CIDRs, or `*`) and return it as
    uvicorn's forwarded_allow_ips wants it. uvicorn would silently take a typo (or a network
    with host bits set, 10.0.0.1/8) as a literal host name that never matches: here a typo is
    an error at start, and a network is normalised."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if items == ["*"]:
        return items
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)) if "/" in item else str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"IVR_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR network") from None
    return out
