"""The processor that connects a call's pipeline to its `CallSession`.

Inbound it hands the session transcripts, DTMF, the caller starting to speak and the bot
starting/stopping; outbound it is the session's `SessionOutput`: prompts become TTSSpeakFrames,
an interruption is broadcast (the output transport drops queued audio and the serializer sends
Twilio `clear`), and hanging up flushes the queued speech before the pipeline ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    CancelWorkerFrame,
    EndFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    InputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ivr.conversation.session import CallSession

from .frames import CallerResumedFrame, CallerSpeakingFrame, CallerTranscriptFrame, TurnKeyedFrame

log = logging.getLogger("ivr.media")

TransferFn = Callable[[str, str, str], Awaitable[bool]]  # (target, reason, summary for the agent)


def spoken_target(target: str) -> str:
    """A transfer target as said aloud: a phone number digit by digit, a SIP address by its user."""
    user = target.split(":", 1)[-1].split("@", 1)[0] if target.startswith("sip:") else target
    digits = "".join(ch for ch in user if ch.isdigit())
    if digits and len(digits) >= len(user.replace("+", "").replace("-", "").replace(" ", "")):
        return " ".join(digits)
    return user


class SessionBridge(FrameProcessor):
    def __init__(self, *, call_id: str, transfer: TransferFn | None = None, rehearsal: bool = False, **kwargs):
        """`rehearsal`: a test call from the dashboard: a transfer is said and shown, not dialled."""
        super().__init__(**kwargs)
        self.call_id = call_id
        self.session: CallSession | None = None
        self._transfer = transfer
        self._rehearsal = rehearsal
        self._started = False
        self._ending = False

    def attach(self, session: CallSession) -> None:
        self.session = session

    # ------------------------------------------------------------ SessionOutput
    async def speak(self, text: str) -> None:
        if self._ending:
            return
        await self.push_frame(TTSSpeakFrame(text))

    async def interrupt(self) -> None:
        await self.broadcast_interruption()

    async def hang_up(self, reason: str) -> None:
        if self._ending:
            return
        self._ending = True
        log.info("call %s: hanging up (%s)", self.call_id, reason)
        # Downstream, behind the queued prompts: the goodbye is spoken before the stream closes.
        await self.push_frame(EndWorkerFrame(reason=reason))

    async def transfer(self, target: str, reason: str, summary: str = "") -> bool:
        if self._rehearsal:
            return await self._say_transfer(target, reason, summary)
        if self._transfer is None:
            log.error("call %s: transfer to %s asked for, but no Twilio credentials are configured", self.call_id, target)
            return False
        ok = await self._transfer(target, reason, summary)
        if ok:
            self._ending = True
            # Twilio ends the media stream itself once the call follows the new TwiML.
            await self.push_frame(EndWorkerFrame(reason=f"transferred to {target}"))
        return ok

    async def _say_transfer(self, target: str, reason: str, summary: str) -> bool:
        """A browser call's transfer: the designer hears and sees where a caller would go (and
        what the agent would hear), then the call ends as a transferred one would."""
        log.info("call %s: test call, transfer to %s not dialled (%s)", self.call_id, target, reason)
        await self.push_frame(OutputTransportMessageUrgentFrame(message={
            "event": "transfer", "target": target, "reason": reason, "summary": summary}))
        note = f"This is a test call, so nobody is dialled. A caller would now be put through to {spoken_target(target)}."
        if self.session is not None:
            self.session.log_event("prompt", {"text": note, "kind": "test call"})
        await self.speak(note)
        self._ending = True
        await self.push_frame(EndWorkerFrame(reason=f"transfer to {target} (not dialled: test call)"))
        return True

    # ------------------------------------------------------------ frames
    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        session = self.session
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            if session is not None and not self._started:
                self._started = True
                self.create_task(self._guard(session.start(), "start"))
            return
        if isinstance(frame, CallerTranscriptFrame):
            if session is not None:
                self.create_task(
                    self._guard(session.on_transcript(frame.text, speech_end=frame.speech_end, stt_ms=frame.stt_ms,
                                                      speech_start=frame.speech_start or None,
                                                      decided_at=frame.decided_at or None,
                                                      discarded=frame.discarded, unsure=frame.unsure,
                                                      early=frame.early, settles_at=frame.settles_at or None,
                                                      silence_ends_at=frame.silence_ends_at or None,
                                                      joined=frame.joined), "turn")
                )
            return  # consumed here: nothing downstream wants it
        if isinstance(frame, CallerResumedFrame):
            if session is not None:
                # A task, not awaited: withdrawing waits for the session's lock, and frames
                # behind this one (DTMF, the bot's speaking events, Twilio's stop) must not.
                # Tasks start in the order they are made, so the transcript it withdraws,
                # always pushed before it, has registered its turn by then.
                self.create_task(self._guard(session.on_caller_resumed(frame.text), "resumed turn"))
            return
        if isinstance(frame, CallerSpeakingFrame):
            if session is not None:
                await self._guard(session.on_caller_speaking(frame.seconds), "barge-in")
            return
        if session is not None:
            if isinstance(frame, VADUserStartedSpeakingFrame):
                await self._guard(session.on_user_started_speaking(), "barge-in")
            elif isinstance(frame, InputDTMFFrame):
                await self.push_frame(TurnKeyedFrame(), FrameDirection.UPSTREAM)
                await self._guard(session.on_dtmf(str(frame.button.value)), "dtmf")
            elif isinstance(frame, BotStartedSpeakingFrame):
                await session.on_bot_started_speaking()
            elif isinstance(frame, BotStoppedSpeakingFrame):
                await session.on_bot_stopped_speaking()
            elif isinstance(frame, InputTransportMessageFrame) and direction == FrameDirection.DOWNSTREAM:
                await self._on_transport_message(frame.message, session)
            elif isinstance(frame, (EndFrame, CancelFrame)):
                await session.end("caller_hangup" if isinstance(frame, CancelFrame) else "completed", "pipeline ended")
        await self.push_frame(frame, direction)

    async def _on_transport_message(self, message, session: CallSession) -> None:
        if not isinstance(message, dict):
            return
        # `mark` echoes need no action: this server sends no marks yet (playback is tracked by
        # the output transport's bot-speaking frames).
        if message.get("event") == "stop":
            log.info("call %s: Twilio sent stop (caller hung up or call ended)", self.call_id)
            await session.end("caller_hangup", "stream stopped")
            # Nobody is listening any more: drop queued prompts instead of playing them out.
            self._ending = True
            await self.push_frame(CancelWorkerFrame(reason="Twilio stop"), FrameDirection.UPSTREAM)

    async def _guard(self, coro: Awaitable, what: str) -> None:
        """Run a session step; a bug in one turn is logged and the call goes on or ends politely."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call %s: %s failed: %s", self.call_id, what, exc)
            if self.session is not None and self.session.events is not None:
                self.session.events.add_event(self.call_id, "error", {"stage": what, "error": str(exc)})
            await self.speak("I'm sorry, something went wrong on our side. Please call again later.")
            await self.hang_up(f"internal error in {what}")
