"""One call through the whole call path at start-up, with nobody on the line, so the first caller
after a start, a deploy or a scale-out is greeted as fast as the hundredth.

What the first call paid for (0.65-0.73 s to the greeting, against ~60 ms for the next ones,
measured over the Twilio protocol on a freshly started `ivr serve`): importing the pipeline and
pipecat (~0.4 s), the VAD's first model session, and pipecat's first run of a pipeline. Rather
than list those and miss the next one, the warm-up runs the real `run_call` over an in-memory
websocket, given the stream's start as the media route would give it: 20 ms frames of line
silence until the greeting's first audio comes back, then a hang-up. Nothing reaches the call log, the recordings, Twilio or
the LLM; the server says it is ready only after this (ivr/serving/app.py, /healthz).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import time

log = logging.getLogger("ivr.media")

WARMUP_CALL = "CAwarmup"
_SILENCE = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of mu-law silence


def greets_quietly(flow) -> bool:
    """Whether the flow's greeting reaches its first question without a backend call, a
    transfer or a handoff: only then may a call with nobody on the line be placed to it."""
    name, seen = flow.start, set()
    while name is not None and name not in seen:
        seen.add(name)
        node = flow.nodes[name]
        if node.action is not None or node.transfer or node.handoff:
            return False
        if node.listens or node.hangup:
            return True
        name = node.next if isinstance(node.next, str) else None
    return False  # branches on slots or a loop: not worth guessing


class _Discard:
    """A call log that keeps nothing: the warm-up call is not a call."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


async def warm_call(runtime, flow_name: str, timeout: float = 20.0) -> float:
    """Seconds from the stream's start to the greeting's first audio on the warm-up call."""
    from starlette.websockets import WebSocket

    from .pipeline import StreamStart, run_call

    flow = runtime.flows.get(flow_name)
    if flow is None:
        raise LookupError(f"flow {flow_name!r} is not loaded")
    if not greets_quietly(flow.flow):
        raise RuntimeError(f"flow {flow_name!r} calls a backend, transfers or hands off before its first question")
    quiet = dataclasses.replace(runtime, settings=dataclasses.replace(runtime.settings, recording=False),
                                store=_Discard(), active_calls={}, twilio=None, llm=None)
    inbox: asyncio.Queue = asyncio.Queue()
    greeted = asyncio.Event()

    async def receive() -> dict:
        return await inbox.get()

    async def send(message: dict) -> None:
        if message.get("type") == "websocket.send" and '"media"' in (message.get("text") or ""):
            greeted.set()

    scope = {"type": "websocket", "path": "/twilio/media", "headers": [], "query_string": b"", "scheme": "ws",
             "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0), "root_path": "", "subprotocols": []}
    websocket = WebSocket(scope, receive, send)
    inbox.put_nowait({"type": "websocket.connect"})
    await websocket.accept()
    start = StreamStart(stream_sid="MZwarmup", call_sid=WARMUP_CALL, flow=flow.name)
    started = time.perf_counter()
    call = asyncio.create_task(run_call(websocket, start, flow, quiet))
    try:
        seq = 0
        while not greeted.is_set() and not call.done():
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"no greeting within {timeout:.0f}s")
            seq += 1
            inbox.put_nowait({"type": "websocket.receive", "text": json.dumps({
                "event": "media", "sequenceNumber": str(seq), "streamSid": "MZwarmup",
                "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(seq * 20), "payload": _SILENCE}})})
            await asyncio.sleep(0.02)
        return time.perf_counter() - started
    finally:
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(call, 10)
        except Exception as exc:  # the warm-up is best effort: a call that fails here fails loudly later
            log.warning("warm-up call did not end cleanly: %s", exc)
