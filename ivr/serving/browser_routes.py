"""Browser calls: a designer talks to a flow (or a draft of it) from the dashboard's "Try a call"
page (ivr/dashboard/static/try.js), through the same pipeline as a phone call.

WS /dashboard/api/try/media   only with a dashboard session (the cookie the login sets) from the
                              dashboard's own origin.

The browser speaks Twilio's Media Streams protocol: `start` (its `customParameters` name the
flow, or a draft file, and `wideband`), then `media` (20 ms of 8 kHz mu-law, or 16 kHz 16-bit
PCM when wideband), `dtmf` and `stop`; it gets back `media` and `clear` like Twilio, plus
`call` (the call's id once it is placed), `transfer` (where a caller would have gone) and
`error` (why the call could not be placed). So VAD, whisper, the NLU, the flow, piper, barge-in,
timers and the call log are the phone line's own, and the same guards hold (socket limits, the
flood and size checks, IVR_MAX_CALLS). Why a websocket and not WebRTC: docs/architecture.md,
"Browser calls".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ivr.calllog.reads import BROWSER_CALL_PREFIX
from ivr.dashboard.origin import same_origin
from ivr.dashboard.auth import COOKIE, DashboardAuth
from ivr.dialog.loader import FlowLoadError
from ivr.serving.config import Settings
from ivr.serving.runtime import Runtime
from ivr.serving.twilio_routes import StreamProtocolError, TwilioRoutes, close_socket, read_start, source_of
from ivr.telephony.guard import SocketSlot, SocketWatch, suffix

log = logging.getLogger("ivr.serving.app")

CHANNEL = "browser"


def browser_call_id() -> str:
    """Shaped like a Twilio CallSid (34 characters), marked as a browser call by its prefix."""
    return BROWSER_CALL_PREFIX + secrets.token_hex(16)


class BrowserCalls:
    def __init__(self, settings: Settings, runtime: Callable[[], Runtime | None], auth: DashboardAuth,
                 twilio: TwilioRoutes):
        self.settings = settings
        self.runtime = runtime
        self.auth = auth
        self.twilio = twilio  # its socket limits and log throttle count browser sockets too
        self.router = APIRouter()
        self.router.add_api_websocket_route("/dashboard/api/try/media", self.media)

    async def media(self, websocket: WebSocket):
        cookie = websocket.cookies.get(COOKIE)
        if not same_origin(websocket.headers):  # another site's page: no answer at all
            await websocket.close(code=1008, reason="not logged in")
            return
        if not self.auth.valid_session(cookie):
            await websocket.accept()  # so the page can say why
            await _refuse(websocket, 1008, "Not logged in, or the session has expired: log in again.")
            return
        source = source_of(websocket)
        refusal = self.twilio.sockets.admit(source)
        await websocket.accept()
        if refusal is not None:
            kind, why = refusal
            self.twilio.refused("browser", kind)
            await _refuse(websocket, 1013, f"The server is busy: {why}.")
            return
        slot = SocketSlot(self.twilio.sockets, source)
        try:
            await self._call(websocket, source, slot.started, operator=self.auth.session_id(cookie))
        finally:
            slot.release()

    async def _call(self, websocket: WebSocket, source: str, started: Callable[[], None], operator: str | None) -> None:
        runtime = self.runtime()
        if runtime is None or runtime.draining:
            await _refuse(websocket, 1013, "The server is loading or shutting down; try again in a moment.")
            return
        watch = SocketWatch(websocket)
        try:
            start = await asyncio.wait_for(read_start(websocket), self.settings.media_start_timeout)
        except asyncio.TimeoutError:
            await _refuse(websocket, 1008, f"No `start` within {self.settings.media_start_timeout:g} s.")
            return
        except (WebSocketDisconnect, StreamProtocolError) as exc:
            why = watch.problem or str(exc) or "the browser closed it"
            self.twilio.refused("browser", "protocol")
            if (skipped := self.twilio.quiet.allow("browser_prestart", source)) is not None:
                log.warning("browser call from %s closed before it started: %s%s", source, why, suffix(skipped))
            await _refuse(websocket, 1008, f"Protocol error: {why}")
            return
        started()
        from ivr.media.pipeline import StreamStart, run_call  # pipecat stays in the media layer

        custom = start.get("customParameters") or {}
        draft = custom.get("draft") or None
        try:
            flow = (await asyncio.to_thread(runtime.flows.draft, draft) if draft
                    else runtime.flows.get(custom.get("flow") or self.settings.default_flow))
        except LookupError as exc:
            await _refuse(websocket, 1008, str(exc))
            return
        except FlowLoadError as exc:
            await _refuse(websocket, 1008, f"The draft {draft} does not validate.", [str(e) for e in exc.errors])
            return
        except Exception as exc:  # deleted while being read, or its preparation failed
            log.exception("browser call: draft %s could not be loaded", draft)
            await _refuse(websocket, 1011, f"The draft {draft} could not be loaded: {exc}")
            return
        if flow is None:
            await _refuse(websocket, 1008, f"No flow {custom.get('flow')!r} is loaded (loaded: "
                                           f"{', '.join(runtime.flows.names) or 'none'}).")
            return
        # Checked last, right before the call is placed: a draft can take a moment to prepare.
        if len(runtime.active_calls) >= self.settings.max_calls:
            self.twilio.refused("browser", "max_calls")
            await _refuse(websocket, 1013, f"The line is full: {len(runtime.active_calls)} calls in progress "
                                           f"(IVR_MAX_CALLS is {self.settings.max_calls}).")
            return
        call_id = browser_call_id()
        info = StreamStart(
            stream_sid=start.get("streamSid") or call_id, call_sid=call_id, flow=flow.name,
            caller="browser", called=None, parameters=custom, channel=CHANNEL,
            wideband=custom.get("wideband") in ("1", "true"), operator=operator,
            flow_file=draft,
        )
        log.info("call %s: browser call from %s on flow %s v%s%s%s", call_id, source, flow.name, flow.version,
                 f" (draft {draft})" if draft else "", " wideband" if info.wideband else "")
        try:
            try:
                await websocket.send_json({"event": "call", "callSid": call_id, "flow": flow.name,
                                           "version": flow.version, "draft": draft, "wideband": info.wideband})
            except (WebSocketDisconnect, RuntimeError):
                return  # the page went away before the call started: nothing to end
            await run_call(websocket, info, flow, runtime, watch=watch)
        finally:
            await close_socket(websocket, 1000, "call ended")  # a flood: run_call closed it 1008 already


async def _refuse(websocket: WebSocket, code: int, message: str, errors: list[str] | None = None) -> None:
    """Tell the page why there is no call (it shows the message), then close."""
    try:
        await websocket.send_json({"event": "error", "message": message, "errors": errors or []})
    except Exception:
        pass
    await close_socket(websocket, code, message[:120])
