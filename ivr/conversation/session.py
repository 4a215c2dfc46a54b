"""One call's conversation: runs the flow engine's effects, the NLU step, timers and the call log.

It knows nothing of pipecat or websockets: the media layer feeds it transcripts, DTMF and
speaking events and gives it a `SessionOutput` to speak through; `ivr chat` and the tests give
it one that prints or records. Every call ends through `end()`, once, whoever ends it
(docs/architecture.md, "One end for every call").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Protocol

from ivr.dialog.engine import (
    EnterNode,
    Expectation,
    FlowEngine,
    Handoff,
    Hangup,
    HttpRequest,
    Listen,
    Say,
    SetSlot,
    Transfer,
)
from ivr.dialog.loader import LoadedFlow
from ivr.dialog.schema import Flow
from ivr.handoff.policy import EscalationPolicy, TurnFacts
from ivr.handoff.transfer import TRANSFER_SAY, human_destination, whisper_summary

from .keypad import KeypadEntry
from .open_turn import OpenTurn, UndoPoint, split_at_final
from .turn import Turn, TurnStep, signals_for_log
from .turn_taking import is_backchannel, sounds_finished

log = logging.getLogger("ivr.session")

TRANSFER_FAILED_SAY = "I'm sorry, I couldn't connect you to an agent right now. Please call again later. Goodbye."
DRAIN_SAY = "We have to end this call now. Please call back. Goodbye."


class SessionOutput(Protocol):
    async def speak(self, text: str) -> None: ...

    async def interrupt(self) -> None: ...

    async def hang_up(self, reason: str) -> None: ...

    async def transfer(self, target: str, reason: str, summary: str = "") -> bool:
        """summary: said to the agent before the caller is connected (empty: none)."""
        ...


class EventSink(Protocol):
    def add_event(self, call_id: str, type: str, data: dict | None = None, ts: float | None = None) -> None: ...


class RecordedEvents:
    """An in-memory EventSink: what `ivr chat` and `ivr test` inspect after each turn."""

    def __init__(self):
        self.items: list[tuple[str, dict]] = []

    def add_event(self, call_id: str, type: str, data: dict | None = None, ts: float | None = None) -> None:
        self.items.append((type, data or {}))

    def of(self, type_: str) -> list[dict]:
        return [d for t, d in self.items if t == type_]


@dataclass
class SessionResult:
    outcome: str = "in_progress"
    reason: str = ""
    transfer_target: str | None = None


class CallSession:
    def __init__(
        self,
        call_id: str,
        flow: LoadedFlow,
        output: SessionOutput,
        *,
        nlu=None,
        events: EventSink | None = None,
        handoff=None,
        actions=None,
        env: dict[str, str] | None = None,
        filler_after: float = 1.0,
        escalation: EscalationPolicy | None = None,
        transfer_target: str | None = None,
        barge_in_after: float | None = None,
    ):
        """escalation: the server's defaults ([escalation] in ivr.toml); the flow's own
        `escalation:` block is laid over them. transfer_target: a person for flows with none.
        barge_in_after: None, the caller's first sound stops the bot; else the bot stops when
        the media layer says they kept talking this long (`on_caller_speaking`) or when their
        words arrive and are not a backchannel (ivr.conversation.turn_taking)."""
        self.call_id = call_id
        self.flow = flow
        self.engine = FlowEngine(flow, env=env)
        self.actions = actions
        self.filler_after = filler_after
        self.output = output
        self.events = events
        self.handoff = handoff
        self.expectation: Expectation | None = None
        self.result = SessionResult()
        self.turns: list[Turn] = []
        self.history: list[dict[str, Any]] = []
        self.bot_speaking = False
        self.barge_in_after = barge_in_after
        self._lock = asyncio.Lock()
        self._keys = KeypadEntry()
        self._digit_timer: asyncio.Task | None = None
        self._no_input_timer: asyncio.Task | None = None
        self._pending_turn: Turn | None = None
        self._open_turn: OpenTurn | None = None  # the caller may still go on with it
        self._told_nobody = False  # the "nobody to put you through to" apology, said once a call
        self._ended = asyncio.Event()
        self._closing = False
        self._ending_politely = False
        self.policy = (escalation or EscalationPolicy()).merged(flow.flow.escalation.model_dump(exclude_none=True))
        self.human = human_destination(flow.flow, self.policy.human, transfer_target)
        self.step = TurnStep(self.engine, nlu, self.policy, flow.flow, on_error=self._nlu_failed)

    # ------------------------------------------------------------ what a handoff may use
    # The LLM conversation (ivr.handoff.llm) holds the call through these, never through the
    # session's internals; ivr.handoff.call.CallControl names them.
    @property
    def flow_def(self) -> Flow:
        return self.flow.flow

    @property
    def node_name(self) -> str | None:
        return self.engine.node_name

    @property
    def slots(self) -> Mapping[str, Any]:
        return MappingProxyType(self.engine.state.slots)

    async def say(self, text: str, kind: str, *, node: str | None = None, source: str | None = None,
                  remember: bool = True) -> None:
        """Say `text` to the caller: a line of the history (what an LLM handoff is shown; not
        for fillers), a `prompt` event in the call log with sensitive values scrubbed, speech."""
        if remember:
            line = {"role": "bot", "text": text}
            line.update({k: v for k, v in (("node", node), ("source", source)) if v is not None})
            self.history.append(line)
        self.log_event("prompt", {"text": self.scrub(text), "node": node or self.engine.node_name, "kind": kind})
        await self.output.speak(text)

    async def set_slot(self, name: str, value: Any) -> None:
        """Keep a value the flow's nodes will read (logged redacted when the slot is sensitive)."""
        self.engine.state.slots[name] = value
        await self.run([SetSlot(name, value)])

    async def goto(self, node: str, reason: str) -> None:
        await self.run(self.engine.goto(node, reason=reason))

    async def hang_up(self, reason: str) -> None:
        await self.run([Hangup(reason)])

    async def transfer(self, target: str, reason: str, trigger: str) -> None:
        await self.run([Transfer(target, reason, trigger)])

    async def call_backend(self, node: str, values: Mapping[str, Any]):
        """A node's backend request with these slot values, without entering the node (the
        LLM uses the flow's actions as tools), logged as the LLM's: its result."""
        request = self.engine.request_for(node, dict(values))
        result = await self.backend().run(request)
        self._log_action(request, result, llm=True)
        return result

    # ------------------------------------------------------------ lifecycle
    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def start(self) -> None:
        async with self._lock:
            await self.run(self.engine.start())

    async def end(self, outcome: str, reason: str = "") -> None:
        """End the call's conversation once: cancel timers, record the outcome."""
        if self._ended.is_set():
            return
        self._ended.set()
        self._cancel_timers()
        if self.result.outcome == "in_progress":
            self.result.outcome, self.result.reason = outcome, reason
        self.log_event("hangup", {"outcome": self.result.outcome, "reason": self.result.reason})

    async def end_politely(self, reason: str, *, say: str = DRAIN_SAY, outcome: str = "drained",
                           lock_wait: float = 1.0) -> bool:
        """End the call from outside (the server is shutting down): stop what the bot is saying,
        say `say`, hang up, outcome `outcome`. False when the call was already ending."""
        if self.closing:
            return False
        self._closing = True  # the caller's words and keys from here on are ignored
        self._ending_politely = True  # and a turn still running says nothing more
        self._cancel_timers()
        try:  # a turn in progress finishes its step (its prompts are dropped), but briefly
            await asyncio.wait_for(self._lock.acquire(), lock_wait)
            self._lock.release()
        except asyncio.TimeoutError:
            pass
        if self.ended:
            return False
        if getattr(self.handoff, "stop", None) is not None:
            self.handoff.stop(self, outcome, reason)  # an LLM reply still streaming stops here
        if self.result.outcome == "in_progress":
            self.result.outcome, self.result.reason = outcome, reason
        self.log_event("drain", {"reason": reason, "node": self.engine.node_name, "outcome": outcome})
        if self.bot_speaking:
            await self.output.interrupt()
        await self.say(say, outcome)
        await self.output.hang_up(reason)
        return True

    # ------------------------------------------------------------ inputs
    async def on_user_started_speaking(self) -> None:
        self._cancel(self._no_input_timer)
        if self._handoff_active() and self.handoff.interrupt(self):
            # The model's reply is still streaming: stop it, or its next sentences would be
            # spoken over the caller who is answering the first.
            self.log_event("barge_in", {"node": self.engine.node_name, "llm": True})
            await self.output.interrupt()
            return
        if self.bot_speaking and self._barge_in_allowed() and self.barge_in_after is None:
            self.log_event("barge_in", {"node": self.engine.node_name})
            await self.output.interrupt()

    async def on_caller_speaking(self, seconds: float) -> None:
        """The caller has talked over the bot for `seconds`: too long for a backchannel."""
        if self.bot_speaking and self._barge_in_allowed() and not self.closing:
            self.log_event("barge_in", {"node": self.engine.node_name, "by": "speech", "after_s": round(seconds, 2)})
            await self.output.interrupt()

    def understand_early(self, text: str) -> None:
        """The caller's words so far, while the end-of-turn silence runs out: start understanding
        them (TurnStep.understand_early); `on_transcript` takes the result if the words stand."""
        text = text.strip()
        if text and not (self.ended or self._closing or self.expectation is None or self._handoff_active()):
            self.step.understand_early(self.expectation, text)

    def answers_early(self, text: str, confidence: float):
        """Whether the words heard so far are a whole menu request, settled with at least
        `confidence`: False, or an awaitable of the answer (the early understanding's). Only a
        menu's request, and only words that do not stop mid-phrase ("I'd like to check on my")."""
        exp = self.expectation
        if (confidence <= 0 or exp is None or exp.slot or exp.confirming or not exp.intents
                or self.ended or self._closing or self._handoff_active() or not sounds_finished(text)):
            return False
        return self.step.settles_early(exp, text.strip(), confidence)

    async def on_caller_resumed(self, text: str) -> None:
        """The caller went on talking just after their turn was committed: withdraw that turn
        (its reply, queued or playing, stops; the flow is put back as it was). Their words come
        again, joined with the rest, as the next transcript."""
        open_turn = self._open_turn
        if (open_turn is None or self.closing or not open_turn.open(slack=1.0)
                or open_turn.turn.text != text.strip()):
            return
        self._open_turn = None
        open_turn.withdrawn.set()  # a turn still deciding stops before it acts
        self._cancel(self._no_input_timer)
        async with self._lock:
            turn = open_turn.turn
            if open_turn.undo is not None:
                if not self.turns or self.turns[-1] is not turn or self.closing:
                    return  # another turn (keys) went on from it meanwhile: it stands
                await self.output.interrupt()
                self._undo(open_turn.undo)
            self.log_event("turn_withdrawn", {"turn": turn.index, "node": self.engine.node_name, "early": open_turn.early,
                                              "replied": turn.first_audio_at is not None})

    def _undo_point(self) -> UndoPoint:
        return UndoPoint(self.engine.snapshot(), self.step.snapshot(), self.expectation, len(self.turns), len(self.history))

    def _undo(self, point: UndoPoint) -> None:
        self.engine.restore(point.engine)
        self.step.restore(point.step)
        self.expectation = point.expectation
        del self.turns[point.turns:]
        del self.history[point.history:]
        self._pending_turn = None
        self._cancel(self._no_input_timer)

    async def on_transcript(self, text: str, *, speech_end: float | None = None, stt_ms: float | None = None,
                            decided_at: float | None = None, discarded: int = 0, unsure: bool = False,
                            early: bool = False, settles_at: float | None = None, joined: bool = False,
                            silence_ends_at: float | None = None, speech_start: float | None = None) -> None:
        """`unsure`: the recogniser was unsure of its words (a number it gives is read back).
        `settles_at`: until then the caller may go on with this turn (`on_caller_resumed`);
        `early`: it ended before the node's full silence (`silence_ends_at`); `joined`: it goes on
        from a withdrawn one."""
        text = text.strip()
        if self.ended or self._closing:
            return
        turn = Turn(len(self.turns) + 1, "speech", speech_end=speech_end, decided_at=decided_at,
                    transcript_at=time.time(), stt_ms=stt_ms, text=text,
                    speech_start=speech_start)
        open_turn = OpenTurn(turn, settles_at, early, quiet_at=silence_ends_at) if settles_at and text else None
        self._open_turn = open_turn
        sensitive = self.answering_sensitive()
        logged_text = "[redacted]" if sensitive and text else text
        self.log_event("transcript", {"text": logged_text, "stt_ms": stt_ms, "node": self.engine.node_name,
                                 **({"discarded": discarded} if discarded else {}), **({"unsure": True} if unsure else {}),
                                 **({"early": True} if early else {}), **({"joined": True} if joined else {})})
        if not text:
            # Whisper heard only noise: not a no-match, just keep listening.
            self._arm_no_input()
            return
        if self.bot_speaking and self.barge_in_after is not None and self._barge_in_allowed():
            exp = self.expectation
            answers_yes_no = exp is not None and (exp.slot_type == "yes_no" or exp.confirming)
            if is_backchannel(text) and not answers_yes_no:
                self.log_event("backchannel", {"text": logged_text, "node": self.engine.node_name})
                return  # "mhm" over a prompt: the prompt goes on, and so does the call
            self.log_event("barge_in", {"node": self.engine.node_name, "by": "words"})
            await self.output.interrupt()
        self._cancel(self._no_input_timer)  # words are input, even where no VAD event came first
        async with self._lock:
            llm_holds_call = self._handoff_active()
            if self.ended or (self.expectation is None and not llm_holds_call):
                return
            if open_turn is not None and llm_holds_call and not await open_turn.settled():
                return  # the model is given the caller's words once, whole
            if open_turn is not None and open_turn.withdrawn.is_set():
                return  # withdrawn while it waited for the last turn to finish
            undo = self._undo_point()
            self.turns.append(turn)
            self.history.append({"role": "caller", "text": text})
            if llm_holds_call:
                await self._llm_turn(turn, text, logged_text, sensitive)
            else:
                await self._flow_turn(turn, text, logged_text, sensitive, unsure, open_turn, undo)

    async def _flow_turn(self, turn: Turn, text: str, logged_text: str, sensitive: bool, unsure: bool = False,
                         open_turn: OpenTurn | None = None, undo: UndoPoint | None = None) -> None:
        """The scripted flow's turn (ivr.conversation.turn): understand, decide, act; while the
        caller may still go on (`open_turn`), only what can be undone is done at once."""
        understood = await self.step.understand(self.expectation, text)
        turn.nlu_done_at = time.time()
        turn.nlu_ms = understood.waited_ms  # what the caller waited for: less when understood early
        decision = self.step.decide(understood.facts, self._available_targets())
        record = self.step.record(understood, decision, text=logged_text, sensitive=sensitive)
        if turn.speech_start and turn.speech_end:  # where the words are in the recording, if any
            record["speech"] = [round(turn.speech_start, 3), round(turn.speech_end, 3)]
        self.log_event("nlu", record)
        leaves_script = decision.escalate or decision.unreachable
        effects = None if leaves_script else self.engine.on_text(text, understood.understanding, asr_unsure=unsure)
        if open_turn is not None and undo is not None:
            # Leaving the script, or hanging up, is never done early: it waits out the node's
            # silence, prompts and all (a goodbye said over "no, [I think that's everything]").
            # Not the join window after it: that cost a quarter of a second on every last turn.
            holds = effects is None or any(isinstance(e, Hangup) for e in effects)
            if open_turn.withdrawn.is_set() or (holds and not await open_turn.settled(until=open_turn.quiet_at)):
                self._undo(undo)  # the caller went on: these words come back with the rest
                return
            if not holds:
                open_turn.undo = undo  # acts now; on_caller_resumed undoes it if they go on
        self._pending_turn = turn
        if decision.escalate:
            await self._escalate(decision)
            return
        if decision.unreachable:
            await self._nobody_to_hand_to(decision)
            effects = self.engine.on_text(text, understood.understanding, asr_unsure=unsure)
        if open_turn is not None and not open_turn.final:
            # The prompts now; a transfer or backend call once the turn has settled (withdrawn
            # meanwhile, on_caller_resumed undoes the prompts).
            now, effects = split_at_final(effects)
            await self.run(now)
            if effects and not await open_turn.settled():
                return
        await self.run(effects)

    async def _llm_turn(self, turn: Turn, text: str, logged_text: str, sensitive: bool) -> None:
        """An LLM holds the conversation: the caller's words are its, not the flow engine's,
        except when they call for a person (small models miss their transfer tool)."""
        turn.nlu_done_at = time.time()
        self._pending_turn = turn
        scores = await self.step.signal_scores(self.engine.node_name, text)
        facts = TurnFacts(None, 1.0, self.step.signals(text, scores), understood=True, menu=False)
        decision = self.step.decide(facts, ["human"] if self.human is not None else [])
        self.log_event("nlu", {"node": self.engine.node_name, "text": logged_text, "source": "llm_handoff",
                               "signals": signals_for_log(facts.signals, sensitive), "decision": decision.as_dict()})
        if decision.escalate:
            await self._escalate(decision)
            return
        await self.handoff.on_caller_text(self, text)

    async def on_dtmf(self, digit: str) -> None:
        if self.ended or self._closing:
            return
        if self.expectation is None:
            if self._handoff_active():
                await self._dtmf_during_handoff(digit)
            return
        self._cancel(self._no_input_timer)
        self.log_event("dtmf", {"digit": "*" if self.answering_sensitive() else digit, "node": self.engine.node_name})
        if self.bot_speaking:
            await self.output.interrupt()  # a key press always cuts the prompt short
        exp = self.expectation
        if not self._keys.digits and self._key_for_a_person(exp, digit):
            async with self._lock:
                await self._key_to_human(digit)
            return
        self._cancel(self._digit_timer)
        if self._keys.press(exp, digit):
            await self._submit_digits()
        else:
            self._digit_timer = asyncio.create_task(self._digit_timeout(exp.inter_digit_timeout))

    async def enter_keys(self, digits: str) -> None:
        """A whole keypad entry at once (text chat, flow tests): no inter-digit wait."""
        for digit in digits:
            await self.on_dtmf(digit)
        if self._keys.digits:
            self._cancel(self._digit_timer)
            await self._submit_digits()

    async def silence(self) -> None:
        """The caller said nothing for the node's no-input time (text chat, flow tests)."""
        self._cancel(self._no_input_timer)
        async with self._lock:
            await self.run(self.engine.on_no_input())

    @property
    def closing(self) -> bool:
        """The flow has ended the conversation (hang-up or transfer under way)."""
        return self._closing or self.ended

    async def on_bot_started_speaking(self) -> None:
        self.bot_speaking = True
        self._cancel(self._no_input_timer)
        turn = self._pending_turn
        if turn is not None and turn.first_audio_at is None:
            turn.first_audio_at = time.time()
            self.log_event("turn_end", {"turn": turn.index, "source": turn.source, **turn.stages()})
            self._pending_turn = None

    async def on_bot_stopped_speaking(self) -> None:
        self.bot_speaking = False
        if self._closing:
            return
        self._arm_no_input()

    # ------------------------------------------------------------ escalation
    def _available_targets(self) -> list[str]:
        targets = []
        if self.handoff is not None and not self._handoff_active():
            targets.append("llm")
        if self.human is not None:
            targets.append("human")
        return targets

    async def _escalate(self, decision) -> None:
        """Leave the script: to the LLM (it answers the caller's last words) or to a person."""
        node = self.engine.node_name
        if decision.target == "llm":
            self.expectation = None
            await self.run([Handoff("llm", node, decision.reason, decision.trigger, decision.score)])
            return
        self.log_event("handoff", {"event": "start", "target": "human", "trigger": decision.trigger,
                                   **_score(decision), "reason": decision.reason, "node": node})
        await self.to_human(decision.reason, decision.trigger)

    async def _nobody_to_hand_to(self, decision) -> None:
        """The caller needs more than the script and no model or person can be reached now: say
        so, kindly, once a call, before the flow answers the turn as it would (its own no-match
        handling included, so its retries and `then` still end the loop)."""
        self.log_event("handoff", {"event": "unavailable", "trigger": decision.trigger, **_score(decision),
                                   "reason": decision.reason, "node": self.engine.node_name})
        if not self._told_nobody:
            self._told_nobody = True
            await self.say(NOBODY_SAY.get(decision.trigger, NOBODY_SAY["person"]), "handoff_unavailable")

    async def to_human(self, reason: str, trigger: str) -> None:
        if self._handoff_active():
            self.handoff.stop(self, "transfer", reason)
        destination = self.human
        self.expectation = None
        if destination in self.flow.flow.nodes:
            await self.run(self.engine.goto(destination, reason=reason, trigger=trigger))
            return
        await self.say(TRANSFER_SAY, "transfer")
        await self.run([Transfer(destination, reason, trigger)])

    def _key_for_a_person(self, exp: Expectation, digit: str) -> bool:
        """The policy's key for a person, in a menu that gives that key no meaning of its own."""
        if digit != self.policy.dtmf_human or self.human is None or exp.slot or exp.confirming:
            return False
        return not any(key.startswith(digit) for key in exp.dtmf_keys)

    async def _key_to_human(self, digit: str) -> None:
        reason = f"caller pressed {digit} for a person"
        self.log_event("handoff", {"event": "start", "target": "human", "trigger": "dtmf", "reason": reason,
                              "node": self.engine.node_name})
        await self.to_human(reason, "dtmf")

    async def _dtmf_during_handoff(self, digit: str) -> None:
        self.log_event("dtmf", {"digit": digit, "node": self.engine.node_name, "handoff": True})
        if digit != self.policy.dtmf_human or self.human is None:
            return  # the model takes no keys: nothing to do with them
        self.handoff.interrupt(self)
        if self.bot_speaking:
            await self.output.interrupt()
        async with self._lock:
            if self._handoff_active():
                await self._key_to_human(digit)

    # ------------------------------------------------------------ internals
    def _barge_in_allowed(self) -> bool:
        return self.expectation is None or self.expectation.barge_in

    def _nlu_failed(self, node: str, error: str) -> None:
        log.error("call %s: NLU failed on node %s: %s", self.call_id, node, error)
        self.log_event("error", {"stage": "nlu", "error": error})

    async def _digit_timeout(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._submit_digits()

    async def _submit_digits(self) -> None:
        digits = self._keys.take()
        if not digits or self.ended:
            return
        self._open_turn = None  # keys answer what the bot said: the spoken turn before stands
        async with self._lock:
            turn = Turn(len(self.turns) + 1, "dtmf", speech_end=time.time(), transcript_at=time.time(), text=digits)
            turn.nlu_done_at = turn.transcript_at
            self.turns.append(turn)
            self._pending_turn = turn
            self.history.append({"role": "caller", "dtmf": digits})
            await self.run(self.engine.on_dtmf(digits))

    def _arm_no_input(self) -> None:
        self._cancel(self._no_input_timer)
        if self.ended or self._closing:
            return
        if self.expectation is None:
            if self._handoff_active():
                seconds = self.handoff.no_input_timeout_s
                self._no_input_timer = asyncio.create_task(self._handoff_no_input_after(seconds))
            return
        self._no_input_timer = asyncio.create_task(self._no_input_after(self.expectation.no_input_timeout))

    async def _no_input_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.ended or self.bot_speaking:
            return
        async with self._lock:
            if self.ended or self.expectation is None or self._handoff_active():
                return  # the caller spoke while we waited for the lock: that turn moved on
            self.log_event("no_input", {"node": self.engine.node_name, "after_s": seconds})
            await self.run(self.engine.on_no_input())

    def _handoff_active(self) -> bool:
        """Whether an LLM handoff is holding the conversation (it gets the caller's words)."""
        is_active = getattr(self.handoff, "is_active", None)
        return is_active is not None and is_active(self)

    async def _handoff_no_input_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.ended or self.bot_speaking:
            return
        self.log_event("no_input", {"node": self.engine.node_name, "after_s": seconds, "handoff": True})
        async with self._lock:
            if self._handoff_active():
                await self.handoff.on_no_input(self)

    async def run(self, effects) -> None:
        for effect in effects:
            if self.ended or self._ending_politely:
                return
            if isinstance(effect, EnterNode):
                self.expectation = None
                self._keys.take()  # keys pressed in the last node are not an answer here
                self.log_event("node", {"node": effect.node})
            elif isinstance(effect, Say):
                await self.say(effect.text, effect.kind, node=effect.node)
            elif isinstance(effect, SetSlot):
                self.log_event("slot", {"name": effect.name, "value": self._redact(effect.name, effect.value)})
            elif isinstance(effect, Listen):
                self.expectation = effect.expectation
                if not self.bot_speaking:
                    self._arm_no_input()
            elif isinstance(effect, Transfer):
                await self._transfer(effect)
            elif isinstance(effect, Handoff):
                await self._handoff(effect)
            elif isinstance(effect, HttpRequest):
                await self.run(await self._call_backend(effect))
                return  # the result's effects ran the rest of this node
            elif isinstance(effect, Hangup):
                self._closing = True
                self.result.outcome = self.result.outcome if self.result.outcome != "in_progress" else "completed"
                self.result.reason = effect.reason
                await self.output.hang_up(effect.reason)

    def backend(self):
        """The HTTP client for the flow's actions (the flow's nodes and the LLM's tools)."""
        if self.actions is None:
            from .actions import HttpActions

            self.actions = HttpActions()
        return self.actions

    async def _call_backend(self, request: HttpRequest):
        task = asyncio.ensure_future(self.backend().run(request))
        done, _ = await asyncio.wait({task}, timeout=self.filler_after)
        if not done and request.wait_say:
            # Never dead air: say something while the backend thinks.
            await self.say(request.wait_say, "wait", node=request.node, remember=False)
        result = await task
        self._log_action(request, result)
        return self.engine.on_action_result(result.ok, result.data, result.error)

    def _log_action(self, request: HttpRequest, result, **extra) -> None:
        self.log_event("action", {"node": request.node, "method": request.method, "url": self.scrub(_strip_query(request.url)),
                                  "ok": result.ok, "status": result.status, "error": result.error,
                                  "latency_ms": result.latency_ms, **extra})

    async def _transfer(self, effect: Transfer) -> None:
        self._closing = True
        slots = self.redacted_slots()
        summary = whisper_summary(self.flow.flow, self.step.last_intent, slots, effect.reason) if self.policy.whisper else ""
        self.log_event("transfer", {"target": effect.target, "reason": effect.reason, "trigger": effect.trigger,
                               "summary": self.scrub(summary), "slots": slots})
        ok, error = False, f"could not transfer to {effect.target}"
        try:
            ok = await self.output.transfer(effect.target, effect.reason, summary=self.scrub(summary))
        except Exception as exc:
            log.error("call %s: transfer to %s failed: %s", self.call_id, effect.target, exc)
            error = str(exc)
        if ok:
            self.result = SessionResult("transferred", effect.reason, effect.target)
            return
        self.log_event("error", {"stage": "transfer", "error": error})
        self.result = SessionResult("transfer_failed", effect.reason, effect.target)
        await self.say(TRANSFER_FAILED_SAY, "transfer_failed")
        await self.output.hang_up("transfer failed")

    async def _handoff(self, effect: Handoff) -> None:
        if self.handoff is not None:
            await self.handoff(self, effect)  # it logs the start, with the model's name
            return
        self.log_event("handoff", {"event": "start", "target": effect.target, "trigger": effect.trigger,
                              "reason": effect.reason, "return_to": effect.return_to, "available": False})
        # No LLM is configured for this server: say so and go back to the flow, never dead air.
        apology = "I'm sorry, I can't help with that on this line."
        await self.say(apology, "handoff_unavailable")
        if effect.return_to:
            await self.run(self.engine.goto(effect.return_to, reason="handoff unavailable"))
        else:
            await self.run([Hangup("handoff unavailable")])

    def secrets(self) -> list[Any]:
        from ivr.privacy.redact import sensitive_values

        slots = dict(self.engine.state.slots)
        pending = self.engine.state.pending
        if pending is not None:
            slots[pending[0]] = pending[1]
        secrets = sensitive_values(slots, self.flow.flow.slots)
        partial = self.engine.state.partial  # "I got 1 2 3 4. What comes next?"
        if partial is not None and self.answering_sensitive():
            secrets.append(partial)
        return secrets

    def answering_sensitive(self) -> bool:
        """The caller is now saying or keying a value marked `sensitive: true`."""
        exp = self.expectation
        slot = self.flow.flow.slots.get(exp.slot) if exp is not None and exp.slot else None
        return slot is not None and slot.sensitive

    def scrub(self, text: str) -> str:
        """Sensitive slot values out of text bound for the call log (prompts read them back)."""
        from ivr.privacy.redact import redact_text

        secrets = self.secrets()
        return redact_text(text, secrets) if secrets else text

    def _redact(self, name: str, value: Any) -> Any:
        slot = self.flow.flow.slots.get(name)
        return "[redacted]" if slot is not None and slot.sensitive else value

    def summary(self) -> dict[str, Any]:
        """What the call log keeps of the call as a whole when it ends."""
        return {
            "reason": self.result.reason,
            "transfer_target": self.result.transfer_target,
            "last_node": self.engine.node_name,
            "slots": self.redacted_slots(),
            "turns": [t.stages() | {"turn": t.index, "source": t.source} for t in self.turns],
        }

    def redacted_slots(self) -> dict[str, Any]:
        return {k: self._redact(k, v) for k, v in self.engine.state.slots.items()}

    def log_event(self, type_: str, data: dict) -> None:
        if self.events is None:
            return
        try:
            self.events.add_event(self.call_id, type_, data)
        except Exception as exc:  # the call log must never break a call
            log.error("call %s: cannot log %s: %s", self.call_id, type_, exc)

    def _cancel(self, task: asyncio.Task | None) -> None:
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def _cancel_timers(self) -> None:
        self._cancel(self._digit_timer)
        self._cancel(self._no_input_timer)


def _strip_query(url: str) -> str:
    """Query strings can carry keys and account numbers: keep them out of the call log."""
    return url.split("?", 1)[0]


NOBODY_SAY = {
    "frustration": "I'm sorry this has been so frustrating. I can't put you through to a person right now, "
                   "but I'll do what I can here.",
    "complaint": "I'm sorry about that. I can't take that up on this line, and there's nobody I can put you "
                 "through to right now.",
    "person": "I'm sorry, there's nobody I can put you through to right now.",
}
"""What the caller hears when the escalation policy wants a person or the model and neither can be
reached (no LLM configured, no transfer node or number)."""


def _score(decision) -> dict:
    return {"score": round(decision.score, 2)} if decision.score is not None else {}
