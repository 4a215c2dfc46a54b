"""Backend calls a flow makes (`action: {http: ...}`), over httpx.

The transport is pluggable (httpx's MockTransport in tests, the real network in a server), so
flows with backend lookups are testable without a backend or mocks in the engine.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from ivr.dialog.engine import HttpRequest

log = logging.getLogger("ivr.actions")

MAX_RESPONSE_BYTES = 1 << 20


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    data: Any = None
    error: str = ""
    status: int | None = None
    latency_ms: float = 0.0


class HttpActions:
    def __init__(self, transport: httpx.AsyncBaseTransport | None = None):
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def run(self, request: HttpRequest) -> ActionResult:
        import time

        started = time.perf_counter()
        try:
            # httpx's timeout bounds each phase; the caller is waiting on the whole request.
            response = await asyncio.wait_for(
                self._client.request(
                    request.method,
                    request.url,
                    headers=request.headers or None,
                    json=request.json_body if request.json_body is not None else None,
                    timeout=request.timeout,
                ),
                request.timeout,
            )
        except (httpx.TimeoutException, asyncio.TimeoutError):
            return ActionResult(False, error=f"timed out after {request.timeout:g}s", latency_ms=_ms(started))
        except httpx.HTTPError as exc:
            return ActionResult(False, error=f"{type(exc).__name__}: {exc}", latency_ms=_ms(started))
        if not 200 <= response.status_code < 300:
            return ActionResult(False, error=f"HTTP {response.status_code}", status=response.status_code, latency_ms=_ms(started))
        body = response.content[:MAX_RESPONSE_BYTES]
        try:
            data: Any = response.json() if body else None
        except ValueError:
            data = body.decode("utf-8", errors="replace")
        return ActionResult(True, data=data, status=response.status_code, latency_ms=_ms(started))

    async def close(self) -> None:
        await self._client.aclose()


def _ms(started: float) -> float:
    import time

    return round((time.perf_counter() - started) * 1000, 1)
