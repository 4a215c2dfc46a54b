"""The JSON API behind "Try a call" (under /dashboard/api): which flows and drafts a designer can
call, and keeping a turn of a call as a flow test. The call itself runs over the browser-call
websocket (ivr/serving/browser_routes.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request

from ivr.conversation.flow_test_cases import (TestCaseError, append_case, as_yaml, case_from_turns, find_tests_file,
                                              new_tests_file, unique_name)
from ivr.dialog.loader import FlowLoadError, load_flow

from .origin import json_from_own_page
from .turns import group_turns

if TYPE_CHECKING:
    from . import Dashboard

log = logging.getLogger("ivr.dashboard")

_WRITING = threading.Lock()  # one read-modify-write of a tests file at a time


def build_try_router(dash: "Dashboard", store) -> APIRouter:
    router = APIRouter()

    runtime = dash.loaded_runtime

    @router.get("/try/flows")
    async def callable_flows():
        """Every flow the line answers with, and every draft in the flows folder (with its
        errors, file:line, when it does not validate)."""
        flows = runtime().flows
        return await asyncio.to_thread(_callable, flows)

    @router.post("/calls/{call_id}/tests")
    async def add_test(call_id: str, request: Request):
        body = await json_from_own_page(request, "tests")  # it writes a file
        turn = body.get("turn")
        if not isinstance(turn, int) or isinstance(turn, bool):
            raise HTTPException(400, "turn: the turn's number, as the call page shows it")
        name = str(body.get("name") or "").strip()[:120] or None
        rt = runtime()
        call = await asyncio.to_thread(store().get_call, call_id)
        if call is None:
            raise HTTPException(404, f"no call {call_id!r} in the call log")
        flow_path = _flow_path(rt, call)
        if flow_path is None:
            raise HTTPException(409, f"flow {call.get('flow')!r} of this call is no longer loaded, so there is no "
                                     "file to add its test beside")
        turns = group_turns(call.get("events") or [], call.get("started_at"))
        try:
            case = case_from_turns(turns, turn, name or f"call {call_id[:12]}, turn {turn}")
        except TestCaseError as exc:
            raise HTTPException(422, str(exc)) from None
        return await asyncio.to_thread(_write, flow_path, rt.settings.flows_dir, case, call_id, turn)

    return router


def _callable(flows) -> dict:
    loaded = [{"name": n, "version": flows.get(n).version, "file": _relative(flows.get(n).path, flows.flows_dir)}
              for n in flows.names]
    drafts = []
    for path in flows.draft_files():
        entry = {"file": path.relative_to(flows.flows_dir).as_posix(), "name": None, "errors": []}
        try:
            entry["name"] = load_flow(path).name
        except FlowLoadError as exc:
            entry["errors"] = [str(e) for e in exc.errors]
        drafts.append(entry)
    return {"flows": loaded, "drafts": drafts}


def _relative(path, base) -> str:
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return str(path)


def _flow_path(rt, call: dict) -> Path | None:
    """The file the call's flow is in now: its draft, or the loaded flow of that name."""
    meta = call.get("meta") if isinstance(call.get("meta"), dict) else {}
    if meta.get("flow_file"):
        path = Path(rt.settings.flows_dir) / meta["flow_file"]
        return path if path in rt.flows.draft_files() else None
    loaded = rt.flows.get(call.get("flow") or "")
    return Path(loaded.path) if loaded is not None else None


def _write(flow_path: Path, flows_dir, case: dict, call_id: str, turn: int) -> dict:
    try:
        tests = find_tests_file(flow_path, Path(flows_dir))
    except TestCaseError as exc:
        return {"added": False, "file": None, "case": as_yaml(case), "reason": str(exc)}
    with _WRITING:
        text = tests.read_text() if tests.exists() else new_tests_file(flow_path, tests)
        try:
            case = {**case, "name": unique_name(text, case["name"])}
            updated = append_case(text, case)
        except TestCaseError as exc:
            return {"added": False, "file": str(tests), "case": as_yaml(case), "reason": str(exc)}
        try:
            tests.parent.mkdir(parents=True, exist_ok=True)
            tmp = tests.with_name(tests.name + ".tmp")
            tmp.write_text(updated)
            tmp.replace(tests)
        except OSError as exc:  # e.g. the image's flows folder is read-only: the case is still given
            log.warning("dashboard: cannot add a test to %s: %s", tests, exc)
            return {"added": False, "file": str(tests), "case": as_yaml(case),
                    "reason": f"the server cannot write {tests} ({exc.strerror or exc}): paste the case by hand"}
    log.info("dashboard: turn %d of call %s added to %s as case %r", turn, call_id, tests, case["name"])
    return {"added": True, "file": str(tests), "case": as_yaml(case), "name": case["name"]}
