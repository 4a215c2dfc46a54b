"""The JSON API behind the Review page (under /dashboard/api/review): the queue grouped, and the
reviewer's decisions (ivr/review/changes.py: accept, undo, dismiss, propose, restore), which
are the same code as `ivr review`'s, so the page and the terminal prove, write and audit alike.

Reads run in a thread; a decision that changes a flow runs the proof (routing and the flow's
tests, on the server's own models) in a thread too, one at a time per process, so two reviewers
never write the same reviewed file at once. Decisions come only from the dashboard's own pages,
as JSON (ivr/dashboard/origin.py), and name the logged-in session as who made them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request

from ivr.calllog.review_queue import REASONS, latest_decisions, settled_turns
from ivr.review.changes import ChangeError, accept, applied_changes, flow_intents, settle, undo
from ivr.review.groups import RememberingEncoder, accepted_turns, describe, grouped, reviewed

from .auth import COOKIE
from .origin import json_from_own_page
from .params import parse_int, parse_time

if TYPE_CHECKING:
    from . import Dashboard

log = logging.getLogger("ivr.dashboard")

MAX_TURNS = 10_000
SHOWN_TURNS = 25  # per group on the page; the group's every turn id still comes with it


def _text(body: dict, key: str, limit: int = 120) -> str | None:
    value = body.get(key)
    return str(value).strip()[:limit] or None if value is not None else None


def _turn_ids(body: dict) -> list[str]:
    turns = body.get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and ":" in t for t in turns):
        raise HTTPException(400, "turns: a list of turns as CALL:SEQ")
    if len(turns) > MAX_TURNS:
        raise HTTPException(400, f"turns: at most {MAX_TURNS} at once")
    return turns


def build_review_router(dash: "Dashboard", store) -> APIRouter:
    router = APIRouter()
    # One decision at a time per process, queued here rather than in a worker thread, so waiting
    # reviewers hold no thread of the pool the server's other blocking work shares; other
    # processes sharing the flows folder are kept out by the reviewed file's lock (_write).
    deciding = asyncio.Lock()
    encoders: dict = {}  # per embedder: the vectors of turns the call log kept none for

    async def _decide(run):
        async with deciding:
            try:
                return await asyncio.to_thread(run)
            except ChangeError as exc:
                raise HTTPException(409, str(exc)) from None

    runtime = dash.loaded_runtime

    def who(request: Request, body: dict) -> str:
        session = dash.auth.session_id(request.cookies.get(COOKIE)) or "operator token"
        name = _text(body, "by", 60)
        return f"{name} ({session})" if name else session

    @router.get("/review")
    async def queue(request: Request):
        params = request.query_params
        flow = (params.get("flow") or "").strip() or None
        since = parse_time("since", params.get("since"))
        limit = parse_int("limit", params.get("limit"), MAX_TURNS, 1, MAX_TURNS)
        shown = parse_int("groups", params.get("groups"), 50, 1, 1000)
        rt = runtime()
        embedder = getattr(rt.nlu.classifier, "embedder", None)
        model = getattr(embedder, "id", None)
        if embedder is not None and model not in encoders:
            encoders[model] = RememberingEncoder(embedder.encode)
        return await asyncio.to_thread(_queue, rt, store(), flow, since, limit, shown, encoders.get(model), model)

    @router.get("/review/history")
    async def history(request: Request):
        flow = (request.query_params.get("flow") or "").strip() or None
        rt = runtime()

        def read():
            return {"changes": applied_changes(Path(rt.settings.flows_dir)),
                    "actions": store().review_actions(flow=flow, limit=200)}
        return await asyncio.to_thread(read)

    @router.post("/review/accept")
    async def accept_turns(request: Request):
        body = await json_from_own_page(request, "review decisions")
        intent = _text(body, "intent")
        if not intent:
            raise HTTPException(400, "intent: the intent the turns mean (or out_of_scope)")
        turns, by, rt = _turn_ids(body), who(request, body), runtime()
        return await _decide(lambda: accept(
            store(), rt.flows.get, Path(rt.settings.flows_dir), intent, turns, by=by,
            classifier=rt.nlu.classifier, nlu=rt.nlu, dry_run=bool(body.get("dry_run"))).as_dict())

    @router.post("/review/undo")
    async def undo_change(request: Request):
        body = await json_from_own_page(request, "review decisions")
        change = _text(body, "change", 40)
        if not change:
            raise HTTPException(400, "change: the id of the change to undo")
        by, rt = who(request, body), runtime()
        return await _decide(lambda: undo(
            store(), Path(rt.settings.flows_dir), change, by=by, classifier=rt.nlu.classifier, nlu=rt.nlu,
            dry_run=bool(body.get("dry_run"))).as_dict())

    @router.post("/review/settle")
    async def settle_turns(request: Request):
        body = await json_from_own_page(request, "review decisions")
        action = {"dismiss": "dismissed", "propose": "proposed", "restore": "restored"}.get(str(body.get("action")))
        if action is None:
            raise HTTPException(400, "action: dismiss, propose or restore")
        turns, by = _turn_ids(body), who(request, body)

        def run():
            done = settle(store(), turns, action, by=by, intent=_text(body, "intent"), reason=_text(body, "reason", 300))
            return {"action": action, "turns": len(done)}
        return await _decide(run)

    return router


def _queue(rt, store, flow: str | None, since: float | None, limit: int, shown: int, encode, model) -> dict:
    started = time.perf_counter()
    actions = store.review_actions(flow=flow, limit=None)
    seen = reviewed(accepted_turns(rt.settings.flows_dir), settled_turns(actions))
    turns = store.review_queue(flow=flow, since=since, limit=limit, skip=seen)  # reviewed ones take no room
    read = time.perf_counter()
    groups = grouped(turns, encode, model=model) if turns and encode is not None else []
    out_groups = []
    for members in groups[:shown]:  # only the groups the page shows are described
        g = describe([turns[i] for i in members])
        out_groups.append({**g, "ids": [f"{t['call_id']}:{t['seq']}" for t in g["turns"]],
                           "turns": g["turns"][:SHOWN_TURNS]})
    flows = {}
    for name in sorted(rt.flows.names):
        loaded = rt.flows.get(name)
        if loaded is not None:
            flows[name] = flow_intents(loaded)
    return {"total": len(turns), "group_count": len(groups), "groups": out_groups, "flows": flows,
            "reasons": REASONS, "proposals": _proposals(actions), "dismissed": _dismissed(actions),
            "recording": bool(rt.settings.recording),
            "took_ms": {"read": round((read - started) * 1000), "total": round((time.perf_counter() - started) * 1000)}}


def _dismissed(actions: list[dict], shown: int = 50) -> list[dict]:
    """The newest turns standing as dismissed, to bring back if that was a mistake."""
    return [{"id": f"{call_id}:{seq}", "text": a.get("text"), "by": a.get("by"), "ts": a.get("ts"), "flow": a.get("flow")}
            for (call_id, seq), a in latest_decisions(actions).items() if a.get("action") == "dismissed"][:shown]


def _proposals(actions: list[dict]) -> list[dict]:
    """New intents proposed for turns still standing as proposed, by name, with their turns."""
    latest = latest_decisions(actions)
    named: dict[tuple[str, str], dict] = {}
    for (call_id, seq), a in latest.items():
        if a.get("action") == "proposed" and a.get("intent"):
            entry = named.setdefault((str(a.get("flow")), a["intent"]), {"flow": a.get("flow"), "intent": a["intent"],
                                                                         "turns": []})
            entry["turns"].append({"id": f"{call_id}:{seq}", "text": a.get("text"), "by": a.get("by")})
    return sorted(named.values(), key=lambda p: -len(p["turns"]))
