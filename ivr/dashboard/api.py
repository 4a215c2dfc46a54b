"""The dashboard's JSON API (under /dashboard/api) and its live websocket.

Every store read is synchronous database work, so it runs in a thread: the event loop keeps
serving calls. Query parameters are checked here and a bad one is a 400 that says what was
wrong, never a 500 or a silently ignored filter.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, Response

from .auth import COOKIE
from .live import RESYNC
from .origin import same_origin
from .params import parse_int, parse_time
from .review_api import build_review_router
from .try_api import build_try_router
from .turns import call_view

if TYPE_CHECKING:
    from . import Dashboard

log = logging.getLogger("ivr.dashboard")

MAX_LIMIT = 500
KEEPALIVE_S = 20.0
SEND_TIMEOUT_S = 10.0
_LIST_FIELDS = ("call_id", "flow", "flow_version", "caller", "called", "started_at", "ended_at", "duration",
                "outcome", "last_node")


def call_filters(params) -> dict:
    """The list filters from query parameters, in the store's keyword names."""
    text = {k: (params.get(k) or "").strip() or None for k in ("flow", "outcome", "caller", "handoff_reason", "q")}
    since, until = parse_time("since", params.get("since")), parse_time("until", params.get("until"))
    if since is not None and until is not None and until <= since:
        raise HTTPException(400, "until must be after since")
    channel = (params.get("channel") or "").strip() or None
    if channel not in (None, "phone", "browser"):
        raise HTTPException(400, f"channel: phone or browser, got {channel!r}")
    return {**text, "since": since, "until": until, "channel": channel}


def list_row(call: dict) -> dict:
    row = {k: call.get(k) for k in _LIST_FIELDS}
    summary = call.get("summary") if isinstance(call.get("summary"), dict) else {}
    row["reason"] = summary.get("reason")
    meta = call.get("meta") if isinstance(call.get("meta"), dict) else {}
    row["channel"] = meta.get("channel") or "phone"
    row["transfer_target"] = summary.get("transfer_target")
    return row


def build_router(dash: "Dashboard") -> APIRouter:
    router = APIRouter(dependencies=[Depends(dash.auth.require)])
    ws_router = APIRouter()

    def store():
        return dash.loaded_runtime().store

    @router.get("/session")
    async def session():
        return {"ok": True}

    @router.get("/options")
    async def options():
        """Values for the filter menus."""
        runtime = dash.runtime()
        flows = sorted(runtime.flows.names) if runtime is not None else []
        totals = await asyncio.to_thread(store().summary)
        return {"flows": flows, "outcomes": sorted(totals["outcomes"]), "handoff_reasons": sorted(totals["escalations"]),
                "recording": dash.settings.recording}

    @router.get("/live")
    async def live_calls():
        return {"calls": await dash.live_snapshot()}

    @router.get("/calls")
    async def calls(request: Request):
        params = request.query_params
        filters = call_filters(params)
        limit = parse_int("limit", params.get("limit"), 50, 1, MAX_LIMIT)
        offset = parse_int("offset", params.get("offset"), 0, 0, 10**9)
        s = store()
        rows, total = await asyncio.gather(
            asyncio.to_thread(s.list_calls, limit, offset, **filters),
            asyncio.to_thread(s.count_calls, **filters),
        )
        return {"calls": [list_row(c) for c in rows], "total": total, "limit": limit, "offset": offset}

    @router.get("/calls/{call_id}")
    async def one_call(call_id: str):
        call = await asyncio.to_thread(store().get_call, call_id)
        if call is None:
            raise HTTPException(404, f"no call {call_id!r} in the call log")
        view = call_view(call)
        view["live"] = dash.live.calls.get(call_id)
        if view["recording"]:
            view["recording"]["available"] = dash.recording_path(view["recording"].get("file")) is not None
        return view

    @router.get("/calls/{call_id}/recording")
    async def recording(call_id: str, request: Request):
        """The call's recording; with `turn=N` (an `nlu` event's number), only the caller's words
        of that turn, as the review page plays them."""
        turn = request.query_params.get("turn")
        seq = parse_int("turn", turn, 0, 1, 10**6) if turn is not None else None
        call = await asyncio.to_thread(store().get_call, call_id)
        if call is None:
            raise HTTPException(404, f"no call {call_id!r} in the call log")
        info = call_view(call)["recording"]
        if not info:
            raise HTTPException(404, "this call was not recorded")
        path = dash.recording_path(info.get("file"))
        if path is None:
            raise HTTPException(404, "the recording file is gone (deleted by retention, or still being written)")
        if seq is None:
            return FileResponse(path, media_type="audio/wav", filename=path.name)
        event = next((e for e in call["events"] if e["seq"] == seq and e["type"] == "nlu"), None)
        span = (event or {}).get("data", {}).get("speech")
        if not (isinstance(span, list) and len(span) == 2 and info.get("started_at")):
            raise HTTPException(404, f"turn {seq} of this call has no words placed in its recording")
        audio = await asyncio.to_thread(caller_words, path, span[0] - info["started_at"], span[1] - info["started_at"])
        return Response(audio, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/summary")
    async def summary(request: Request):
        params = request.query_params
        since, until = parse_time("since", params.get("since")), parse_time("until", params.get("until"))
        if since is not None and until is not None and until <= since:
            raise HTTPException(400, "until must be after since")
        bucket = parse_int("bucket_s", params.get("bucket_s"), 3600, 60, 31 * 86400)
        flow = (params.get("flow") or "").strip() or None
        try:
            return await asyncio.to_thread(store().summary, since=since, until=until, flow=flow, bucket_s=bucket)
        except ValueError as exc:  # e.g. too many time buckets for the range
            raise HTTPException(400, str(exc))

    router.include_router(build_try_router(dash, store))
    router.include_router(build_review_router(dash, store))

    @ws_router.websocket("/live")
    async def live_socket(ws: WebSocket):
        if not (dash.auth.valid_session(ws.cookies.get(COOKIE)) or _bearer_ok(dash, ws)) or not same_origin(ws.headers):
            await ws.close(code=1008, reason="not logged in")
            return
        await ws.accept()
        await stream_live(dash, ws)

    return router, ws_router


def _bearer_ok(dash, ws: WebSocket) -> bool:
    header = ws.headers.get("authorization", "")
    return header[:7].lower() == "bearer " and dash.auth.check_token(header[7:].strip())


async def stream_live(dash: "Dashboard", ws: WebSocket) -> None:
    """Snapshot, then every call change, until the browser goes away or falls behind."""
    sub = dash.publisher.subscribe()  # before the snapshot: nothing falls between the two
    receiver = asyncio.ensure_future(ws.receive())
    getter: asyncio.Future | None = None
    try:
        await _send(ws, {"kind": "snapshot", "calls": await dash.live_snapshot()})
        while True:
            getter = asyncio.ensure_future(sub.get(KEEPALIVE_S))
            done, _ = await asyncio.wait({receiver, getter}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                if receiver.result().get("type") == "websocket.disconnect":
                    return
                receiver = asyncio.ensure_future(ws.receive())  # the browser sends nothing we need
            if getter in done:
                message = getter.result()
                getter = None
                if message is RESYNC:
                    await _send(ws, RESYNC)
                    await ws.close(code=1013, reason="missed updates; reconnect")
                    return
                await _send(ws, message if message is not None else {"kind": "ping"})
    except (WebSocketDisconnect, asyncio.TimeoutError, RuntimeError):
        return  # gone, or not reading: its subscription is dropped below
    finally:
        sub.close()
        for task in (receiver, getter):
            if task is not None and not task.done():
                task.cancel()


async def _send(ws: WebSocket, message: dict) -> None:
    await asyncio.wait_for(ws.send_text(json.dumps(message, default=str)), SEND_TIMEOUT_S)


def caller_words(path: Path, start_s: float, end_s: float, pad_s: float = 0.3) -> bytes:
    """The caller's channel of a recording (left), from `start_s` to `end_s` with a little either
    side, as a mono WAV."""
    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        first = max(0, int((start_s - pad_s) * rate))
        last = min(w.getnframes(), int((end_s + pad_s) * rate))
        w.setpos(min(first, w.getnframes()))
        frames = np.frombuffer(w.readframes(max(0, last - first)), dtype="<i2").reshape(-1, channels)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(frames[:, 0]).tobytes())
    return out.getvalue()


def safe_recording_path(directory: Path, name: str | None) -> Path | None:
    """The file a `recording` event names, if it is a plain name inside the recordings folder."""
    if not name or Path(name).name != name or not name.endswith(".wav"):
        return None
    path = Path(directory) / name
    return path if path.is_file() else None
