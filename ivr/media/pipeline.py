"""Assemble and run one call's pipecat pipeline over an accepted Twilio media websocket.

    websocket -> SafeTwilioSerializer -> VAD (Silero) -> UtteranceTranscriber (shared whisper)
      -> SessionBridge (CallSession: flow engine + NLU) -> SharedPiperTTS -> websocket

The pipeline runs at 16 kHz in (whisper's rate) and 8 kHz out (Twilio's), so TTS audio is
never resampled twice. Whoever ends the call (flow, caller, Twilio, an error), it ends here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams
from pipecat.workers.runner import WorkerRunner

from ivr.conversation.session import CallSession
from ivr.conversation.turn_taking import sounds_finished
from ivr.dialog.loader import LoadedFlow
from ivr.dialog.number_reading import more_digits
from ivr.handoff.policy import EscalationPolicy
from ivr.conversation.context import call_id_var
from ivr.speech.stt import STT_RATE
from ivr.telephony.agent_whisper import public_http_base

from .session_bridge import SessionBridge
from .pacing import LeadPacedTransport
from .recording_tap import RecordingSerializer, collecting_sensitive, open_recording
from .serializer import WIDEBAND_RATE, SafeTwilioSerializer
from .speak import SharedPiperTTS
from .transcribe import UtteranceTranscriber

log = logging.getLogger("ivr.media")

LONG_TURN_SLOTS = {"digits", "phone", "email", "money", "date", "time"}


def recogniser_prompt(hints, slot_type: str | None) -> str | None:
    """Whisper's initial prompt for a node: the designer's hints. Digit and phone nodes get no
    prompt of their own: "1234 5678 90", which they had, made whisper worse on numbers read
    aloud (`ivr bench digits`, 6-digit numbers exact at the first try, two seeds of 60: real
    voices 0.37 -> 0.48 and 0.30 -> 0.42 without it, the piper voice 0.80 -> 0.88 and 0.72 -> 0.87)."""
    return ", ".join(hints) or None


class NodeCues:
    """What the node the caller is answering tells speech recognition and the end of the turn:
    whisper's prompt, how long a pause ends the turn, whether the words are already a whole answer."""

    def __init__(self, settings):
        self.settings = settings
        self.session: CallSession | None = None  # set once the call's session exists

    def _expectation(self):
        """What the current node waits for (None before the session starts or while it speaks)."""
        return self.session.expectation if self.session is not None else None

    def recogniser_hint(self) -> str | None:
        """Whisper's initial prompt: what the node expects (the designer's hints)."""
        exp = self._expectation()
        return None if exp is None else recogniser_prompt(exp.hints, exp.slot_type)

    def reading_numbers(self) -> bool:
        exp = self._expectation()
        return exp is not None and exp.slot_type in LONG_TURN_SLOTS

    def end_of_turn_silence(self) -> float:
        """Short after a question or a menu, longer while digits or an address are read
        (callers pause between groups; a fixed short silence cuts them off, livekit/agents 3701)."""
        return self.settings.vad_stop_secs_long if self.reading_numbers() else self.settings.vad_stop_secs

    def words_go_on(self, text: str) -> float | None:
        """The words so far are the start of something with more to come, so wait this long,
        not the usual end-of-turn silence: the start of the number this node collects ("4 5 7 2"
        of a card's sixteen digits: callers pause between groups, `ivr bench digits`), or words
        that stop mid-phrase ("I'd like to check on ...": callers pause for the word)."""
        if self.session is None:
            return None
        if self.session.engine.number_incomplete(text):
            return self.settings.vad_stop_secs_number
        if not self.reading_numbers() and not sounds_finished(text):
            return self.settings.vad_stop_secs_unfinished
        return None

    def answers_the_node(self, text: str):
        """The caller's words already answer the node: the whole value it collects, or a menu
        request the NLU settles with confidence (an awaitable, within the silence left): end
        the turn without waiting out the rest of the silence. Never words that stop
        mid-phrase ("yes, that's ..."), except digits, which have rules of their own."""
        if self.session is None or not (self.reading_numbers() or sounds_finished(text)):
            return False
        if self.session.engine.answer_is_whole(text):
            return True
        return self.session.answers_early(text, self.settings.early_answer_confidence)

    def heard_early(self, text: str) -> None:
        """The words so far, during the end-of-turn silence: understand them meanwhile."""
        if self.session is not None:
            self.session.understand_early(text)


@dataclass(frozen=True)
class StreamStart:
    """What the stream's `start` message told us about the call."""

    stream_sid: str
    call_sid: str
    flow: str
    caller: str | None = None
    called: str | None = None
    parameters: dict | None = None
    channel: str = "phone"
    """"browser": a test call from the dashboard (ivr/serving/browser_routes.py). It is logged as
    such, left out of the line's figures, and its transfers are said, not dialled."""
    wideband: bool = False
    """The caller's audio is 16 kHz PCM, not the phone's 8 kHz mu-law (browser calls only)."""
    operator: str | None = None
    """Who placed a browser call (their dashboard session)."""
    flow_file: str | None = None
    """The flow's file, when it is a draft rather than a flow the line answers with."""


async def run_call(websocket, start: StreamStart, flow: LoadedFlow, runtime, watch=None) -> CallSession:
    """`watch` (ivr.telephony.guard.SocketWatch) ends a stalled stream and says why a socket closed."""
    settings = runtime.settings
    call_id = start.call_sid
    call_id_var.set(call_id)  # every log line this call causes carries its id
    cues = NodeCues(settings)
    recording = None
    if settings.recording:
        recording = open_recording(settings.recordings_path, call_id, lambda: collecting_sensitive(cues.session))
        serializer = RecordingSerializer(start.stream_sid, start.call_sid, call_id=call_id, recording=recording,
                                         wideband=start.wideband)
    else:
        serializer = SafeTwilioSerializer(start.stream_sid, start.call_sid, call_id=call_id, wideband=start.wideband)
    transport = LeadPacedTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
            session_timeout=settings.max_call_seconds,
        ),
        lead=settings.audio_lead_secs,
    )
    # The VAD's own stop window is the short pause at which whisper starts speculatively; the
    # node's end-of-turn silence is waited out by the transcriber (ivr/media/transcribe.py).
    vad_params = VADParams(
        confidence=settings.vad_confidence, start_secs=settings.vad_start_secs,
        stop_secs=min(settings.vad_pause_secs, settings.vad_stop_secs),
    )
    vad = SileroVADAnalyzer(sample_rate=STT_RATE, params=vad_params)

    barge_in_after = settings.barge_in_after_secs or None
    transcriber = UtteranceTranscriber(runtime.stt, call_id=call_id, prompt_for=cues.recogniser_hint,
                                       endpoint_for=cues.end_of_turn_silence, full_window_for=cues.reading_numbers,
                                       complete_for=cues.answers_the_node, heard_early=cues.heard_early,
                                       long_preroll_for=cues.reading_numbers, longer_for=cues.words_go_on,
                                       more_of_it=more_digits,
                                       barge_in_after=barge_in_after)

    transfer = None
    rehearsal = start.channel == "browser"  # nobody to dial: the transfer is said instead
    if runtime.twilio is not None and not rehearsal:
        public_base = public_http_base(settings.public_url, str(websocket.url), websocket.headers)
        transfer = runtime.twilio.transfer_for(start.call_sid, secret=runtime.secret, public_base=public_base)
    bridge = SessionBridge(call_id=call_id, transfer=transfer, rehearsal=rehearsal)
    out_rate = WIDEBAND_RATE if start.wideband else runtime.tts.out_rate  # the bot's voice, as the line carries it
    tts = SharedPiperTTS(runtime.tts, rate=out_rate)
    pipeline = Pipeline([transport.input(), VADProcessor(vad_analyzer=vad), transcriber, bridge, tts, transport.output()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=STT_RATE, audio_out_sample_rate=out_rate),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )

    session = CallSession(
        call_id, flow, bridge, nlu=runtime.nlu, events=runtime.store, handoff=runtime.llm,
        escalation=EscalationPolicy().merged(settings.escalation), transfer_target=settings.transfer_target,
        env=dict(os.environ), barge_in_after=barge_in_after,
    )
    cues.session = session
    bridge.attach(session)

    @transport.event_handler("on_client_disconnected")
    async def _on_disconnected(_transport, _client):
        problem = watch.problem if watch is not None else None  # e.g. a message over the size limit
        if problem:
            log.warning("call %s: media websocket closed by the server: %s", call_id, problem)
            runtime.store.add_event(call_id, "error", {"stage": "media", "error": problem})
        if watch is not None and watch.flooded:  # say why, before pipecat closes it as a normal end
            try:
                await websocket.close(code=1008, reason="flooding")
            except Exception:
                pass
        await session.end("error" if problem else "caller_hangup", problem or "media websocket closed")
        await worker.cancel()

    async def _end_if_stalled():
        quiet = await watch.wait_stalled(settings.media_stall_seconds)
        if session.closing:  # the flow is hanging up already: let its goodbye play out, within reason
            quiet = await watch.wait_stalled(settings.media_stall_seconds + 30)
        log.warning("call %s: nothing from Twilio for %.1fs (it sends audio every 20 ms): ending the call as stalled",
                    call_id, quiet)
        await session.end("stalled", f"no media for {quiet:.0f}s")
        await worker.cancel()

    @transport.event_handler("on_session_timeout")
    async def _on_timeout(_transport, _client):
        log.warning("call %s: longer than %ss, ending it", call_id, settings.max_call_seconds)
        await session.end("timeout", "maximum call length")
        await worker.cancel()

    runtime.store.start_call(
        call_id,
        flow=flow.name,
        flow_version=flow.version,
        caller=start.caller,
        called=start.called,
        models=runtime.models,
        meta={"stream_sid": start.stream_sid, "channel": start.channel,
              **({"operator": start.operator} if start.operator else {}),
              **({"wideband": True} if start.wideband else {}),
              **({"flow_file": start.flow_file} if start.flow_file else {})},
    )
    runtime.active_calls[call_id] = {"flow": flow.name, "started": time.time(), "session": session,
                                     "channel": start.channel}
    runner = WorkerRunner(handle_sigint=False)
    stall_watch = asyncio.create_task(_end_if_stalled()) if watch is not None and settings.media_stall_seconds > 0 else None
    try:
        await runner.add_workers(worker)
        await runner.run()
    except Exception as exc:
        log.exception("call %s: pipeline failed: %s", call_id, exc)
        runtime.store.add_event(call_id, "error", {"stage": "pipeline", "error": str(exc)})
        await session.end("error", str(exc))
    finally:
        if stall_watch is not None:
            stall_watch.cancel()
        runtime.active_calls.pop(call_id, None)
        await _close_call(runtime, session, flow, recording, serializer)
    return session


async def _close_call(runtime, session: CallSession, flow: LoadedFlow, recording, serializer) -> None:
    """Whoever ended the call: the session's outcome, the recording finished, the call log's row closed."""
    call_id = session.call_id
    await session.end("completed", "pipeline finished")
    if recording is not None:
        info = recording.finish()
        runtime.store.add_event(call_id, "recording", {
            "file": info.file, "duration_s": info.duration_s, "paused_s": info.paused_s, "started_at": info.started_at,
            "channels": "left caller, right bot",
        })
    runtime.store.end_call(
        call_id,
        session.result.outcome,
        flow=flow.name,
        summary={**session.summary(), "rejected_messages": serializer.rejected},
    )
