"""The operator dashboard, served by the app under /dashboard: live calls, the call list, a
call's turns and recording, and a summary. One `Dashboard` per app ties together its login
(auth), the live feed (live), the JSON API (api) and the pages (pages)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Callable

from fastapi import APIRouter, HTTPException

from .api import build_router, safe_recording_path
from .auth import DashboardAuth
from .live import LiveCalls, LocalPublisher, Publisher, PublishingStore
from .pages import build_pages

log = logging.getLogger("ivr.dashboard")

#: After a failed read, live snapshots leave the call log out for this long.
SKIP_LOG_S = 5.0


class Dashboard:
    def __init__(self, settings, runtime: Callable[[], object | None], publisher: Publisher | None = None):
        self.settings = settings
        self.runtime = runtime
        self.auth = DashboardAuth(settings.dashboard_token)
        self._chosen = publisher is not None
        self.publisher = publisher or LocalPublisher()
        self._local = self.publisher
        self.live = LiveCalls()
        self._skip_log_until = float("-inf")
        self.router = APIRouter()
        api, live_ws = build_router(self)
        self.router.include_router(api, prefix="/api")
        self.router.include_router(live_ws, prefix="/api")
        self.router.include_router(build_pages(self))

    def loaded_runtime(self):
        """The server's runtime, for a request that needs it: a 503 while the models load."""
        rt = self.runtime()
        if rt is None:
            raise HTTPException(503, "the server is still loading")
        return rt

    def observe(self, store) -> PublishingStore:
        """Wrap the call store so every call change reaches the live feed; on PostgreSQL, the
        live feed of every instance on the same database (pg_live)."""
        backend = getattr(store, "backend", None)
        if not self._chosen and getattr(backend, "name", None) == "postgresql":
            from .pg_live import PgLivePublisher  # psycopg: only needed with PostgreSQL

            self.publisher = PgLivePublisher(backend.url, self.live, self._local).start()
        return PublishingStore(store, self.publisher, self.live)

    def announce(self) -> None:
        base = self.settings.public_url or f"http://{self.settings.host}:{self.settings.port}"
        self.auth.announce(base.rstrip("/") + "/dashboard/")

    def recording_path(self, name: str | None) -> Path | None:
        return safe_recording_path(self.settings.recordings_path, name)

    async def live_snapshot(self) -> list[dict]:
        """Calls in progress: this process's live view, plus any the call log has from elsewhere
        (another instance on the same database), with what the log knows of them."""
        calls = {c["call_id"]: c for c in self.live.snapshot()}
        runtime = self.runtime()
        rows = []
        # With the database down, what this process knows is still worth showing; and the next
        # snapshots do not wait on it again (an unreachable host costs a connect timeout each).
        if runtime is not None and time.monotonic() >= self._skip_log_until:
            try:
                rows = await asyncio.to_thread(runtime.store.active_calls)
            except Exception as exc:
                self._skip_log_until = time.monotonic() + SKIP_LOG_S
                log.warning("dashboard: live snapshots leave out the call log for %.0f s (%s: %s)", SKIP_LOG_S,
                            type(exc).__name__, " ".join(str(exc).split()))
            for row in rows:
                if row["call_id"] not in calls and not self.live.is_ended(row["call_id"]):
                    calls[row["call_id"]] = {
                        "call_id": row["call_id"], "flow": row.get("flow"), "flow_version": row.get("flow_version"),
                        "caller": row.get("caller"), "called": row.get("called"), "started_at": row.get("started_at"),
                        "node": row.get("last_node"), "last_transcript": None, "last_prompt": None, "intent": None,
                        "confidence": None, "turns": None, "events": None, "updated_at": None, "remote": True,
                    }
        return sorted(calls.values(), key=lambda c: c.get("started_at") or 0)
