"""The LLM conversation a call is handed to by a `{handoff: llm, return_to: NODE}` node.

`LLMHandoff` is the session's `handoff` callable. One instance serves every call (it holds the
OpenAI client); each call's conversation lives in a `_Conversation` keyed weakly by its session.

While a conversation is active the session must send caller transcripts to `on_caller_text`
instead of the flow engine (`is_active(session)` says when). The conversation ends, and the
scripted flow takes over again, when the model calls `return_to_flow`, `transfer_to_human` or
`end_call`, after `max_turns` replies, or on any failure (timeout, connection or HTTP error,
an empty reply), which is apologised for and sent to the flow's fallback.

Small local models call tools badly (docs/architecture.md, "Who decides"): they print the call as JSON text, or
think aloud in <think> tags. Streamed text is therefore filtered before it is spoken: JSON,
markup and tool-call text are held back, parsed for tool calls, and never read to the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import httpx2  # the HTTP library the openai client is built on (not httpx): its errors can escape a stream
import openai

from ivr.dialog.engine import Handoff
from ivr.handoff.call import CallControl

from ivr.privacy.redact import redact_slots, redact_text

log = logging.getLogger("ivr.handoff.llm")

APOLOGY = "I'm sorry, I'm having trouble with that right now."
STILL_THERE = "Are you still there?"
GOODBYE_SAY = "Thank you for calling. Goodbye."
MAX_TOOL_ROUNDS = 3  # model -> tool result -> model; more means it is looping
MAX_HISTORY = 12  # earlier lines cost prompt time on a small model and rarely matter
CLEANUP_TIMEOUT_S = 1.0  # closing a stalled stream must not delay the fallback


@dataclass(frozen=True)
class LLMSettings:
    base_url: str
    model: str
    api_key: str = "none"
    timeout_s: float = 8.0
    """Longest a whole reply may take, from request to last token."""
    first_token_timeout_s: float = 4.0
    filler_after_s: float = 1.2
    filler_say: str = "One moment while I look into that."
    max_turns: int = 6
    """LLM replies per handoff; after the last one the call goes back to `return_to`."""
    temperature: float = 0.2
    system_prompt: str | None = None
    """Appended to the generated prompt: the business's own rules and facts."""
    max_tokens: int = 200
    """A spoken reply is a sentence or two; this bounds a rambling model."""
    transfer_target: str | None = None
    """Where transfer_to_human goes when the flow has no `transfer:` node."""
    no_input_timeout_s: float = 8.0
    """Silence after a reply before asking "are you still there?" (the session's timer)."""


def llm_settings(settings) -> LLMSettings:
    """The handoff's settings from the server's (ivr.serving.config.Settings)."""
    return LLMSettings(
        base_url=settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout, first_token_timeout_s=settings.llm_first_token_timeout,
        filler_after_s=settings.llm_filler_after, filler_say=settings.llm_filler_say,
        max_turns=settings.llm_max_turns, system_prompt=settings.llm_system_prompt,
        transfer_target=settings.transfer_target,
    )


# ---------------------------------------------------------------- data at the boundaries
@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict
    id: str | None = None  # None: printed as text by the model, not a native tool call


@dataclass
class LLMReply:
    interrupted: bool = False
    """The caller spoke (or pressed a key) over it: the rest was dropped."""
    spoken: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    raw: str = ""
    first_token_ms: float | None = None
    latency_ms: float = 0.0
    tokens: int = 0
    usage_tokens: int | None = None
    filler: bool = False


class LLMFailure(Exception):
    """The model gave no usable answer; `reason` goes to the call log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Conversation:
    effect: Handoff
    node: str | None
    messages: list[dict] = field(default_factory=list)
    turns: int = 0
    silences: int = 0
    started: float = field(default_factory=time.time)
    barge: asyncio.Event = field(default_factory=asyncio.Event)
    streaming: bool = False
    tokens: int = 0


# ---------------------------------------------------------------- tools
TOOL_NAMES = ("return_to_flow", "transfer_to_human", "end_call", "set_slot")
HTTP_TOOL = "http_"
"""Prefix of the tools made from the flow's backend actions: http_<node>."""
_TOOL_NAME = r"(?:" + "|".join(TOOL_NAMES) + r"|" + HTTP_TOOL + r"[A-Za-z0-9_]+)"


def is_tool_name(name) -> bool:
    return isinstance(name, str) and (name in TOOL_NAMES or bool(re.fullmatch(HTTP_TOOL + r"[A-Za-z0-9_]+", name)))


def action_tools(flow) -> dict[str, tuple[str, list[str]]]:
    """The flow's backend actions as tools: name -> (node, the slots its request needs)."""
    tools = {}
    for name, node in flow.nodes.items():
        if node.action is None:
            continue
        text = json.dumps(node.action.json_body) + node.action.url + " ".join(node.action.headers.values())
        needed = sorted(set(re.findall(r"\{\s*slots\.([A-Za-z_][A-Za-z0-9_]*)", text)) & set(flow.slots))
        tools[HTTP_TOOL + name] = (name, needed)
    return tools


def tool_specs(nodes: list[str], slots: list[str], flow=None) -> list[dict]:
    """OpenAI function tools; enums keep a model from inventing nodes or slots."""

    def fn(name: str, description: str, props: dict, required: list[str]) -> dict:
        schema = {"type": "object", "properties": props, "required": required}
        return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}

    node_prop = {"type": "string", "description": "the menu step to go to"}
    if nodes:
        node_prop["enum"] = nodes
    reason = {"type": "string", "description": "why, in a few words"}
    tools = [
        fn("return_to_flow", "Send the caller back to a step of the automated menu.", {"node": node_prop}, ["node"]),
        fn("transfer_to_human", "Transfer the caller to a human agent.", {"reason": reason}, ["reason"]),
        fn("end_call", "End the call when the caller is done.", {"reason": reason}, ["reason"]),
    ]
    for tool_name, (node_name, needed) in (action_tools(flow) if flow is not None else {}).items():
        action = flow.nodes[node_name].action
        what = f"{action.http} request of the menu step '{node_name}'"
        props = {n: {"type": "string", "description": flow.slots[n].description or flow.slots[n].type} for n in needed}
        tools.append(fn(tool_name, f"Look it up in our systems: the {what}; returns its answer.", props, needed))
    if slots:
        tools.append(
            fn(
                "set_slot",
                "Record a detail the caller gave.",
                {"name": {"type": "string", "enum": slots}, "value": {"type": "string"}},
                ["name", "value"],
            )
        )
    return tools


# ---------------------------------------------------------------- streamed text -> speech
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
# Where text stops being speech: JSON, tags, code fences or a tool's name written as a call.
_HOLD = re.compile(r"[{<\[]|```|\b" + _TOOL_NAME + r"\b")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n+")
_TOOL_TAG = re.compile(r"</?tool_call>|</?function[^>]*>|<\|[^|>]*\|>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>\n]{0,40}>")
_FENCE = re.compile(r"```[a-z]*", re.IGNORECASE)
_PY_CALL = re.compile(r"\b(" + _TOOL_NAME + r")\s*\(([^)]*)\)")
_PY_ARG = re.compile(r"(\w+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^,\s)]+))")
_MARKDOWN = re.compile(r"[*_#`~|>]+")
_BULLET = re.compile(r"^\s*(?:[-•]|\d+[.)])\s+")


def visible_text(raw: str, *, final: bool) -> str:
    """The part of the streamed text that may be spoken so far.

    Mid-stream everything from the first hold marker on waits (it may be the start of JSON or a
    tag); at the end the caller gets the same text with tool calls and markup taken out. The
    mid-stream result is always a prefix of the final one, so sentences spoken early stay valid.
    """
    text = _THINK_BLOCK.sub(" ", raw)
    opened = _THINK_OPEN.search(text)
    if opened:  # an unclosed <think>: the rest is reasoning, never speech
        text = text[: opened.start()]
    if not final:
        hold = _HOLD.search(text)
        return text[: hold.start()] if hold else text
    return _strip_tool_text(text)[0]


def _strip_tool_text(text: str) -> tuple[str, list[ToolCall]]:
    """Remove JSON objects, tags, fences and name(...) calls; return the rest and the tool calls."""
    calls: list[ToolCall] = []
    out: list[str] = []
    decoder = json.JSONDecoder()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                # Unbalanced or truncated JSON: drop it rather than read braces aloud.
                end = _skip_broken_json(text, i)
                value = None
            calls.extend(_calls_from_json(value))
            out.append(" ")
            i = end
            continue
        out.append(ch)
        i += 1
    text = "".join(out)

    def python_call(match: re.Match) -> str:
        args = {m.group(1): next(g for g in m.groups()[1:] if g is not None) for m in _PY_ARG.finditer(match.group(2))}
        if not args and match.group(2).strip():
            # Positional: node / reason / (name, value) in declaration order.
            parts = [p.strip().strip("'\"") for p in match.group(2).split(",")]
            keys = {"return_to_flow": ["node"], "set_slot": ["name", "value"]}.get(match.group(1), ["reason"])
            args = dict(zip(keys, parts))
        calls.append(ToolCall(match.group(1), args))
        return " "

    text = _PY_CALL.sub(python_call, text)
    text = _TOOL_TAG.sub(" ", text)
    text = _ANY_TAG.sub(" ", text)
    text = _FENCE.sub(" ", text)
    text = re.sub(r"\b" + _TOOL_NAME + r"\b", " ", text)
    return text, calls


def _skip_broken_json(text: str, start: int) -> int:
    depth = 0
    for j in range(start, len(text)):
        if text[j] in "{[":
            depth += 1
        elif text[j] in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def _calls_from_json(value: Any) -> list[ToolCall]:
    """Tool calls in the shapes small models print: {"name", "arguments"|"parameters"}, OpenAI's
    {"function": {...}}, {"tool": ...}, or a list of those."""
    if isinstance(value, list):
        return [c for v in value for c in _calls_from_json(v)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("function"), dict):
        return _calls_from_json(value["function"])
    name = value.get("name") or value.get("tool") or value.get("function")
    if not is_tool_name(name):
        return []
    args = value.get("arguments", value.get("parameters", value.get("args", {})))
    if isinstance(args, str):
        with suppress(ValueError):
            args = json.loads(args)
    return [ToolCall(name, args if isinstance(args, dict) else {})]


def speakable(sentence: str) -> str:
    """A sentence as TTS should get it: no markdown, bullets or stray symbols."""
    text = _BULLET.sub("", sentence)
    text = _MARKDOWN.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if re.search(r"[A-Za-z0-9]", text) else ""


class SentenceStream:
    """Feeds streamed deltas in, gives complete speakable sentences out."""

    def __init__(self):
        self.raw = ""
        self._emitted = 0  # characters of the visible text already handed out

    def feed(self, delta: str) -> list[str]:
        self.raw += delta
        return self._take(visible_text(self.raw, final=False), final=False)

    def finish(self) -> tuple[list[str], list[ToolCall]]:
        text = _THINK_BLOCK.sub(" ", self.raw)
        opened = _THINK_OPEN.search(text)
        if opened:
            text = text[: opened.start()]
        rest, calls = _strip_tool_text(text)
        return self._take(rest, final=True), calls

    def _take(self, visible: str, *, final: bool) -> list[str]:
        pending = visible[self._emitted :]
        sentences: list[str] = []
        consumed = 0
        for match in _SENTENCE_END.finditer(pending):
            sentences.append(pending[consumed : match.end()])
            consumed = match.end()
        if final and pending[consumed:].strip():
            sentences.append(pending[consumed:])
            consumed = len(pending)
        self._emitted += consumed
        return [s for s in (speakable(x) for x in sentences) if s]


# ---------------------------------------------------------------- prompt
def describe_nodes(flow) -> dict[str, str]:
    """What each node the model may return to is for, from the intents that lead to it."""
    described: dict[str, list[str]] = {}
    intent_sets = [flow.global_intents] + [n.intents or {} for n in flow.nodes.values()]
    for intents in intent_sets:
        for name, spec in intents.items():
            if spec.goto and spec.goto in flow.nodes and not flow.nodes[spec.goto].handoff:
                text = spec.description or (spec.phrases[0] if spec.phrases else name)
                described.setdefault(spec.goto, [])
                if text not in described[spec.goto]:
                    described[spec.goto].append(text)
    out = {node: "; ".join(texts[:2]) for node, texts in described.items()}
    start = flow.nodes.get(flow.start)
    if flow.start not in out and start is not None and not start.handoff:
        out[flow.start] = "the main menu"
    return out


def returnable_nodes(flow) -> list[str]:
    # A handoff node would hand straight back to the model: a loop, not a return.
    return [name for name, node in flow.nodes.items() if not node.handoff]


def build_system_prompt(flow, settings: LLMSettings) -> str:
    """The flow's fixed instructions. Nothing per call goes here: servers cache the prompt's
    prefix (system prompt + tool schemas), which saves seconds per reply on a small CPU."""
    business = flow.description or flow.flow.replace("_", " ")
    nodes = describe_nodes(flow)
    lines = [
        f"You are the phone assistant of {business}.",
        "Answer in one or two short spoken sentences: plain words, no lists, no markdown.",
        "Do not invent account details, prices or policies. Never ask for card numbers, PINs or passwords.",
        "Use return_to_flow when the caller wants something the menu handles, transfer_to_human"
        " if you cannot help or they ask for a person, end_call when they are done.",
    ]
    if nodes:
        lines.append("Menu steps for return_to_flow:")
        lines += [f"- {name}: {text}" for name, text in nodes.items()]
    if flow.slots:
        lines.append("Details set_slot can record: " + ", ".join(f"{n} ({s.type})" for n, s in flow.slots.items()))
    if settings.system_prompt:
        lines.append(settings.system_prompt.strip())
    return "\n".join(lines)


def call_context(flow, effect: Handoff, slots: dict) -> str:
    """What is particular to this call, sent after the fixed prompt so the prefix stays cached."""
    lines = [f"The automated menu passed this caller to you ({effect.reason})."]
    if effect.return_to and effect.return_to in flow.nodes:
        lines.append(f"The caller came from the menu step '{effect.return_to}'.")
    if slots:
        lines.append("Known details: " + json.dumps(slots, default=str))
    return " ".join(lines)


def history_messages(history: list[dict], secrets: list[Any]) -> list[dict]:
    """The call so far as chat messages, redacted, consecutive lines of one side merged."""
    messages: list[dict] = []
    for entry in history[-MAX_HISTORY:]:
        role = "user" if entry.get("role") == "caller" else "assistant"
        if "dtmf" in entry:
            text = "(pressed keys on the keypad)"  # may be a PIN: the digits never leave
        else:
            text = redact_text(str(entry.get("text", "")), secrets)
        if not text.strip():
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += " " + text
        else:
            messages.append({"role": role, "content": text})
    return messages


# ---------------------------------------------------------------- the handoff
class LLMHandoff:
    """`async (session, effect)`: the LLM talks with the caller until it hands the call back."""

    def __init__(self, settings: LLMSettings, *, client: openai.AsyncOpenAI | None = None,
                 http_client: httpx2.AsyncClient | None = None):
        self.settings = settings
        # No retries: a retry doubles the caller's wait; the flow's fallback is the retry.
        self.client = client or openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key,
            # openai's own Timeout: an object of another HTTP library is refused (httpx2 >= 2.17).
            timeout=openai.Timeout(settings.timeout_s, connect=min(2.0, settings.timeout_s)),
            max_retries=0,
            http_client=http_client,
        )
        self._calls: weakref.WeakKeyDictionary[Any, _Conversation] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------ session API
    async def __call__(self, session: CallControl, effect: Handoff) -> None:
        conv = _Conversation(effect, session.node_name)
        conv.messages = history_messages(session.history, session.secrets())
        self._calls[session] = conv
        session.log_event("handoff", {"event": "start", "target": "llm", "trigger": effect.trigger, "reason": effect.reason,
                                 **({"score": round(effect.score, 2)} if effect.score is not None else {}),
                                 "return_to": effect.return_to, "node": conv.node, "model": self.settings.model})
        await self._turn_safely(session, conv)

    def interrupt(self, session: CallControl) -> bool:
        """The caller spoke or keyed over a reply still streaming: stop speaking it. True when
        there was one to stop."""
        conv = self._calls.get(session)
        if conv is None or not conv.streaming:
            return False
        conv.barge.set()
        return True

    def stop(self, session: CallControl, why: str, detail: str = "") -> None:
        """End this call's conversation from outside (the caller asked for a person)."""
        conv = self._calls.get(session)
        if conv is not None:
            conv.barge.set()
            self._end(session, conv, why, detail)

    @property
    def no_input_timeout_s(self) -> float:
        return self.settings.no_input_timeout_s

    def is_active(self, session: CallControl) -> bool:
        """Whether the caller's next words belong to the LLM rather than the flow engine."""
        return session in self._calls and not session.closing

    async def on_caller_text(self, session: CallControl, text: str) -> None:
        conv = self._calls.get(session)
        if conv is None or session.closing:
            return
        conv.silences = 0
        conv.messages.append({"role": "user", "content": redact_text(text, session.secrets())})
        await self._turn_safely(session, conv)

    async def on_no_input(self, session: CallControl) -> None:
        """The caller said nothing after a reply: ask once, then hand back to the flow."""
        conv = self._calls.get(session)
        if conv is None or session.closing:
            return
        conv.silences += 1
        session.log_event("handoff", {"event": "no_input", "count": conv.silences})
        if conv.silences == 1:
            await self._say(session, conv, STILL_THERE, "no_input")
            return
        self._end(session, conv, "no_input", f"silent {conv.silences} times")
        await self._fallback(session, conv, "caller silent during the LLM handoff")

    # ------------------------------------------------------------ one caller turn
    async def _turn_safely(self, session: CallControl, conv: _Conversation) -> None:
        try:
            await self._caller_turn(session, conv)
        except Exception as exc:  # a bug here must cost the caller an apology, not the call
            log.exception("call %s: LLM handoff failed", session.call_id)
            if self._calls.get(session) is conv:
                await self._fail(session, conv, f"internal error: {type(exc).__name__}: {exc}")
            else:
                session.log_event("error", {"stage": "llm", "error": f"{type(exc).__name__}: {exc}"})

    async def _caller_turn(self, session: CallControl, conv: _Conversation) -> None:
        conv.turns += 1
        spoke = False
        for round_ in range(MAX_TOOL_ROUNDS):
            try:
                reply = await self._stream_reply(session, conv)
            except LLMFailure as exc:
                await self._fail(session, conv, exc.reason)
                return
            if session.closing:
                self._end(session, conv, "call ended", "")
                return
            self._log_turn(session, conv, round_, reply)
            spoke = spoke or bool(reply.spoken)
            conv.messages.append(self._assistant_message(reply))
            if reply.interrupted:
                return  # the caller's new words (or keys) are the next turn
            if not reply.tool_calls:
                break
            if await self._run_tools(session, conv, reply, spoke):
                return  # a tool ended the handoff
        if not spoke:
            await self._fail(session, conv, "empty reply")
            return
        if conv.turns >= self.settings.max_turns:
            session.log_event("handoff", {"event": "decision", "decision": "max_turns", "turns": conv.turns})
            self._end(session, conv, "max_turns", f"{conv.turns} replies")
            await self._fallback(session, conv, f"LLM handoff reached max_turns ({conv.turns})")

    def _assistant_message(self, reply: LLMReply) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(reply.spoken)}
        native = [c for c in reply.tool_calls if c.id]
        if native:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in native
            ]
        return message

    # ------------------------------------------------------------ streaming
    async def _stream_reply(self, session: CallControl, conv: _Conversation) -> LLMReply:
        """Stream one completion, speaking each sentence as it completes."""
        s = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_deadline = started + s.first_token_timeout_s
        end_deadline = started + s.timeout_s
        filler_at = started + s.filler_after_s
        reply, text = LLMReply(), SentenceStream()
        native: dict[int, dict] = {}
        chunks = self._chunks(self._request(session, conv)).__aiter__()
        pending: asyncio.Future | None = None
        conv.barge.clear()
        conv.streaming = True
        barged = asyncio.ensure_future(conv.barge.wait())
        try:
            while True:
                pending = asyncio.ensure_future(chunks.__anext__())
                while True:
                    waiting_first = reply.first_token_ms is None
                    until = end_deadline
                    if waiting_first:
                        until = min(until, first_deadline if reply.filler else min(filler_at, first_deadline))
                    done, _ = await asyncio.wait({pending, barged}, timeout=max(0.0, until - loop.time()),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if barged in done:
                        reply.interrupted = True
                        reply.latency_ms = round((loop.time() - started) * 1000, 1)
                        reply.tokens = reply.usage_tokens or reply.tokens
                        return reply
                    if done:
                        break
                    if waiting_first and not reply.filler and loop.time() < first_deadline:
                        reply.filler = True  # no dead air while the model thinks
                        await self._say(session, conv, s.filler_say, "llm_filler")
                        continue
                    phase = "first token" if waiting_first else "reply"
                    limit = s.first_token_timeout_s if waiting_first else s.timeout_s
                    raise LLMFailure(f"timeout: no {phase} within {limit:g}s")
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    break
                for sentence in self._on_chunk(chunk, reply, text, native, started, loop.time()):
                    if session.closing or conv.barge.is_set():
                        reply.interrupted = conv.barge.is_set()
                        return reply
                    reply.spoken.append(sentence)
                    await self._say(session, conv, sentence, "llm")
        except LLMFailure:
            raise
        except (openai.APITimeoutError, httpx2.TimeoutException, asyncio.TimeoutError) as exc:
            raise LLMFailure(f"timeout: {type(exc).__name__}") from exc
        except openai.APIStatusError as exc:
            raise LLMFailure(f"HTTP {exc.status_code}") from exc
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            raise LLMFailure(f"connection error: {exc}") from exc
        except Exception as exc:  # a broken server or client must cost an apology, not the call
            log.exception("LLM stream failed")
            raise LLMFailure(f"{type(exc).__name__}: {exc}") from exc
        finally:
            conv.streaming = False
            barged.cancel()
            await _close_quietly(pending, chunks)
        tail, printed = text.finish()
        for sentence in tail:
            if session.closing:
                return reply
            reply.spoken.append(sentence)
            await self._say(session, conv, sentence, "llm")
        reply.raw = text.raw
        reply.tool_calls = [_native_call(v) for _, v in sorted(native.items())] + printed
        reply.latency_ms = round((loop.time() - started) * 1000, 1)
        reply.tokens = reply.usage_tokens or reply.tokens
        return reply

    def _on_chunk(self, chunk, reply: LLMReply, text: SentenceStream, native: dict, started: float,
                  now: float) -> list[str]:
        usage = getattr(chunk, "usage", None)
        if usage is not None and (getattr(usage, "total_tokens", None) or getattr(usage, "completion_tokens", None)):
            # The server's own count, prompt included: what a hosted model bills.
            reply.usage_tokens = usage.total_tokens or usage.completion_tokens
        if not chunk.choices:
            return []
        delta = chunk.choices[0].delta
        if delta is None or not (delta.content or delta.tool_calls):
            return []
        if reply.first_token_ms is None:
            reply.first_token_ms = round((now - started) * 1000, 1)
        reply.tokens += 1  # about one token per chunk; replaced by the server's count when it sends one
        for call in delta.tool_calls or ():
            slot = native.setdefault(call.index or 0, {"id": None, "name": "", "arguments": ""})
            slot["id"] = call.id or slot["id"]
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
        return text.feed(delta.content) if delta.content else []

    def _request(self, session: CallControl, conv: _Conversation) -> dict:
        flow = session.flow_def
        slots = redact_slots(session.slots, flow.slots)
        context = {"role": "system", "content": call_context(flow, conv.effect, slots)}
        return self._body(flow, [context] + conv.messages)

    def _body(self, flow, messages: list[dict], *, stream: bool = True, max_tokens: int | None = None) -> dict:
        body = {
            "model": self.settings.model,
            "messages": [{"role": "system", "content": build_system_prompt(flow, self.settings)}] + messages,
            "tools": tool_specs(returnable_nodes(flow), list(flow.slots), flow),
            "temperature": self.settings.temperature,
            "max_tokens": max_tokens or self.settings.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}  # servers that know it send the token count
        return body

    async def warm(self, loaded_flow, timeout_s: float = 120.0) -> float | None:
        """Have the server read a flow's fixed prompt once (at load), so the first caller handed
        over does not wait for it: ~30 s for ~490 tokens with Qwen 0.5B on a busy 2-core CPU.

        Returns the milliseconds it took, or None when the server did not answer (logged only:
        a cold server is slow, not broken)."""
        started = time.perf_counter()
        body = self._body(loaded_flow.flow, [{"role": "user", "content": "Hello."}], stream=False, max_tokens=1)
        try:
            await self.client.chat.completions.create(**body, timeout=timeout_s)
        except Exception as exc:
            log.warning("LLM warm-up for flow %s failed: %s", loaded_flow.flow.flow, exc)
            return None
        return round((time.perf_counter() - started) * 1000, 1)

    async def _chunks(self, request: dict):
        stream = await self.client.chat.completions.create(**request)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            with suppress(Exception):
                await stream.close()

    # ------------------------------------------------------------ tools
    async def _run_tools(self, session: CallControl, conv: _Conversation, reply: LLMReply, spoke: bool) -> bool:
        """Run the reply's tool calls in order; True when one of them ended the handoff."""
        for call in reply.tool_calls:
            args = call.arguments if isinstance(call.arguments, dict) else {}
            result, ended = await self._tool(session, conv, call.name, args, spoke)
            session.log_event("handoff", {"event": "tool", "tool": call.name, "args": self._safe_args(session, call.name, args),
                                     "result": result, "printed": call.id is None})
            if ended:
                return True
            if call.id:
                conv.messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            else:  # a printed call has no id to answer; tell the model in its own words
                conv.messages.append({"role": "system", "content": f"{call.name} result: {result}"})
        return False

    async def _tool(self, session: CallControl, conv: _Conversation, name: str, args: dict, spoke: bool) -> tuple[str, bool]:
        flow = session.flow_def
        reason = str(args.get("reason") or "").strip()[:200] or "asked by the assistant"
        if name == "return_to_flow":
            # Small models name the argument "step" or "name": take the one they gave.
            node = str(args.get("node") or next(iter(args.values()), "")).strip()
            if node not in returnable_nodes(flow):
                return f"error: unknown step '{node}'; use one of {', '.join(returnable_nodes(flow))}", False
            self._end(session, conv, "return_to_flow", node)
            await session.goto(node, f"LLM returned to the flow: {node}")
            return "ok", True
        if name == "transfer_to_human":
            if self._human(session) is None:
                return "error: no human agents on this line; help the caller or return to the menu", False
            self._end(session, conv, "transfer_to_human", reason)
            await self._to_human(session, f"LLM: {reason}", "llm")
            return "ok", True
        if name == "end_call":
            if not spoke:
                await self._say(session, conv, GOODBYE_SAY, "llm")
            self._end(session, conv, "end_call", reason)
            await session.hang_up(f"LLM: {reason}")
            return "ok", True
        if name == "set_slot":
            return await self._set_slot(session, str(args.get("name", "")), args.get("value")), False
        if name in action_tools(flow):
            return await self._http_tool(session, name, args), False
        return f"error: no tool named '{name}'", False

    async def _http_tool(self, session: CallControl, name: str, args: dict) -> str:
        """One of the flow's backend actions, with the slot values the model gathered."""
        flow = session.flow_def
        node, needed = action_tools(flow)[name]
        values = {}
        for slot_name in needed:
            raw = args.get(slot_name, session.slots.get(slot_name))
            slot = flow.slots[slot_name]
            parsed = slot.parse("" if raw is None else str(raw))
            if not parsed.ok:
                return f"error: {slot_name} is not a valid {slot.type}: {parsed.reason}; ask the caller for it"
            values[slot_name] = parsed.value
        for slot_name, value in values.items():
            if session.slots.get(slot_name) != value:
                await session.set_slot(slot_name, value)
        result = await session.call_backend(node, values)
        if not result.ok:
            return f"error: the lookup failed ({result.error}); apologise, or transfer the caller"
        data = json.dumps(result.data, default=str) if not isinstance(result.data, str) else result.data
        return redact_text(data[:1500], session.secrets())

    async def _set_slot(self, session: CallControl, name: str, value: Any) -> str:
        slot = session.flow_def.slots.get(name)
        if slot is None:
            return f"error: unknown detail '{name}'; known: {', '.join(session.flow_def.slots) or 'none'}"
        parsed = slot.parse("" if value is None else str(value))
        if not parsed.ok:
            return f"error: not a valid {slot.type}: {parsed.reason}"
        await session.set_slot(name, parsed.value)  # logs it, redacted when sensitive
        return "saved"

    def _human(self, session: CallControl) -> str | None:
        """Where a person is for this call: the session's policy, else the LLM settings."""
        return session.human or self.settings.transfer_target

    async def _to_human(self, session: CallControl, reason: str, trigger: str) -> None:
        if session.human is not None:
            await session.to_human(reason, trigger)
            return
        await session.transfer(self.settings.transfer_target, reason, trigger)

    def _safe_args(self, session: CallControl, name: str, args: dict) -> dict:
        if name != "set_slot":
            return {k: redact_text(str(v)) for k, v in args.items()}
        slot = session.flow_def.slots.get(str(args.get("name")))
        value = "[redacted]" if slot is None or slot.sensitive else redact_text(str(args.get("value")))
        return {"name": args.get("name"), "value": value}

    # ------------------------------------------------------------ endings
    async def _fail(self, session: CallControl, conv: _Conversation, reason: str) -> None:
        session.log_event("error", {"stage": "llm", "error": reason})
        self._end(session, conv, "error", reason)
        if session.closing:
            return
        await self._say(session, conv, APOLOGY, "llm_error")
        await self._fallback(session, conv, f"LLM handoff failed: {reason}")

    async def _fallback(self, session: CallControl, conv: _Conversation, reason: str) -> None:
        """Back to the scripted flow: the flow's `llm_fallback` (retry: return_to; human: a
        person), else whichever of the two exists, else a polite goodbye."""
        flow = session.flow_def
        return_to = conv.effect.return_to
        wants_human = session.policy.llm_fallback == "human"
        human = self._human(session)
        if return_to in returnable_nodes(flow) and not (wants_human and human is not None):
            session.log_event("handoff", {"event": "fallback", "to": "return_to", "node": return_to, "reason": reason})
            await session.goto(return_to, reason)
            return
        if human is not None:
            session.log_event("handoff", {"event": "fallback", "to": "transfer", "target": human, "reason": reason})
            await self._to_human(session, reason, "llm_fallback")
            return
        session.log_event("handoff", {"event": "fallback", "to": "hangup", "reason": reason})
        await self._say(session, conv, GOODBYE_SAY, "llm")
        await session.hang_up(reason)

    def _end(self, session: CallControl, conv: _Conversation, why: str, detail: str) -> None:
        if self._calls.pop(session, None) is None:
            return
        # The total is `total_tokens`, not `tokens`: the turn records already carry the counts.
        session.log_event("handoff", {"event": "end", "why": why, "detail": detail, "turns": conv.turns,
                                 "total_tokens": conv.tokens, "duration_ms": round((time.time() - conv.started) * 1000, 1)})

    # ------------------------------------------------------------ helpers
    async def _say(self, session: CallControl, conv: _Conversation, text: str, kind: str) -> None:
        await session.say(text, kind, node=conv.node, source="llm")

    def _log_turn(self, session: CallControl, conv: _Conversation, round_: int, reply: LLMReply) -> None:
        conv.tokens += reply.tokens
        session.log_event("handoff", {
            "event": "turn", "turn": conv.turns, "round": round_, "latency_ms": reply.latency_ms,
            "first_token_ms": reply.first_token_ms, "tokens": {"llm": reply.tokens},
            "tokens_reported": reply.usage_tokens is not None, "sentences": len(reply.spoken),
            "filler": reply.filler, "interrupted": reply.interrupted, "tool_calls": [c.name for c in reply.tool_calls],
        })

    async def aclose(self) -> None:
        await self.client.close()


def _native_call(acc: dict) -> ToolCall:
    try:
        args = json.loads(acc["arguments"]) if acc["arguments"] else {}
    except ValueError:
        args = {}
    return ToolCall(acc["name"], args if isinstance(args, dict) else {}, acc["id"] or f"call_{acc['name']}")


async def _close_quietly(pending: asyncio.Future | None, chunks) -> None:
    """Stop reading the stream without letting a stalled connection delay the fallback."""
    if pending is not None:
        pending.add_done_callback(_consume)
        if not pending.done():
            pending.cancel()
            await asyncio.wait({pending}, timeout=CLEANUP_TIMEOUT_S)
    closing = asyncio.ensure_future(chunks.aclose())
    closing.add_done_callback(_consume)
    await asyncio.wait({closing}, timeout=CLEANUP_TIMEOUT_S)


def _consume(future: asyncio.Future) -> None:
    # Errors of a stream we abandoned are expected; retrieving them keeps asyncio quiet.
    if not future.cancelled():
        future.exception()
