"""The operator dashboard, served by the app under /dashboard: live calls, the call list, a
call's turns and recording, and a summary. One `Dashboard` per app ties together its login
(auth), the live feed (live), the JSON API (api) and the pages (pages)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from fastapi import APIRouter

from .api import build_router, safe_recording_path
from .auth import DashboardAuth
from .live import LiveCalls, LocalPublisher, Publisher, PublishingStore
from .pages import build_pages


class Dashboard:
    def __init__(self, settings, runtime: Callable[[], object | None], publisher: Publisher | None = None):
        self.settings = settings
        self.runtime = runtime
        self.auth = DashboardAuth(settings.dashboard_token)
        self.publisher = publisher or LocalPublisher()
        self.live = LiveCalls()
        self.router = APIRouter()
        api, live_ws = build_router(self)
        self.router.include_router(api, prefix="/api")
        self.router.include_router(live_ws, prefix="/api")
        self.router.include_router(build_pages(self))

    def observe(self, store) -> PublishingStore:
        """Wrap the call store so every call change reaches the live feed."""
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
        if runtime is not None:
            for row in await asyncio.to_thread(runtime.store.active_calls):
                if row["call_id"] not in calls and row["call_id"] not in self.live.recently_ended:
                    calls[row["call_id"]] = {
                        "call_id": row["call_id"], "flow": row.get("flow"), "flow_version": row.get("flow_version"),
                        "caller": row.get("caller"), "called": row.get("called"), "started_at": row.get("started_at"),
                        "node": row.get("last_node"), "last_transcript": None, "last_prompt": None, "intent": None,
                        "confidence": None, "turns": None, "events": None, "updated_at": None, "remote": True,
                    }
        return sorted(calls.values(), key=lambda c: c.get("started_at") or 0)
