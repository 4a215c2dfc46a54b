"""The baseline we claim to beat: an LLM picks the transition by a tool call, per turn.

This is how pipecat.flows (and most "flows by LLM" stacks) route a caller: the node's
transitions are offered to the model as functions, the conversation so far is the context, and
whatever function the model calls is the next node. It is run here on the same GGUF as our SLM
step, through llama-cpp-python's chat completion with the model's own chat template (which puts
the tools in the system prompt, Qwen2.5's `<tool_call>` convention), so the comparison is on
equal footing: same weights, same threads, and llama-cpp-python reuses the common prompt
prefix between turns the way a server's prompt cache would.

Two variants:
  auto    the model may answer in text instead of calling a function (pipecat.flows' default,
          `tool_choice="auto"`); a turn with no call is a miss, or out-of-scope when expected.
  forced  a grammar makes it call exactly one of the functions, one of which is
          `other_request` for anything the menu does not handle (what a designer adds so
          the model has somewhere to go); never an invalid name, but never a confidence either.

Tool calls give no confidence: the result reports 1.0, which is exactly the problem the
calibration columns of the benchmark show.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ivr.nlu.cpu_threads import LlamaThreads, ThreadPolicy
from ivr.nlu.intents import IntentResult
from ivr.nlu.understanding import OUT_OF_SCOPE, Intent
from ivr.nlu.router import humanize

OTHER = "other_request"

SYSTEM = (
    "You are the voice assistant of a company's phone line. You help callers by routing their "
    "request: when the caller says what they want, call the function that handles it. Keep any "
    "spoken reply short."
)
GREETING = "Thanks for calling. How can I help you today?"

_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def tool_specs(intents: Sequence[Intent], *, with_other: bool) -> list[dict]:
    """One function per transition, described the way a designer writes pipecat.flows
    functions: what the caller wants, with the same example phrases our router gets."""
    tools = []
    for i in intents:
        desc = i.description or f"The caller wants: {humanize(i.name)}."
        exs = [e for e in i.examples if e.strip()]
        if exs:
            desc += " Examples: " + "; ".join(f'"{e}"' for e in exs)
        tools.append({"type": "function", "function": {
            "name": i.name, "description": desc,
            "parameters": {"type": "object", "properties": {}, "required": []}}})
    if with_other:
        tools.append({"type": "function", "function": {
            "name": OTHER,
            "description": "The caller wants something that none of the other functions handle.",
            "parameters": {"type": "object", "properties": {}, "required": []}}})
    return tools


def parse_tool_call(text: str) -> str | None:
    """The called function's name from a Qwen/Hermes-style reply, or None when it called none."""
    m = _CALL.search(text or "")
    if not m:
        return None
    try:
        name = json.loads(m.group(1)).get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


@dataclass
class ToolCallRouter:
    """Routes a turn by asking the GGUF for a tool call (the pipecat.flows way)."""

    model_path: str | Path
    n_threads: int = 1
    n_ctx: int = 4096
    max_tokens: int = 48
    n_gpu_layers: int = 0
    max_threads: int = 0  # as the SLM: up to this many while cores are idle (0: n_threads)

    def __post_init__(self) -> None:
        from llama_cpp import Llama

        self.threads = LlamaThreads(ThreadPolicy(self.n_threads, self.max_threads or self.n_threads))
        self.llm = Llama(model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                         n_threads_batch=self.n_threads, n_gpu_layers=self.n_gpu_layers, verbose=False)
        self._grammars: dict[tuple[str, ...], object] = {}

    def _grammar(self, names: Sequence[str]):
        from llama_cpp import LlamaGrammar

        key = tuple(names)
        if key not in self._grammars:
            alts = " | ".join(json.dumps(n) for n in names)
            gbnf = ('root ::= "<tool_call>\\n{\\"name\\": \\"" name "\\", \\"arguments\\": {}}\\n</tool_call>"\n'
                    f"name ::= {alts}\n")
            self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        return self._grammars[key]

    def classify(self, intents: Sequence[Intent], text: str, *, mode: str = "forced") -> IntentResult:
        if mode not in ("auto", "forced"):
            raise ValueError(f"mode must be 'auto' or 'forced', not {mode!r}")
        forced = mode == "forced"
        tools = tool_specs(intents, with_other=forced)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "assistant", "content": GREETING},
                    {"role": "user", "content": text}]
        grammar = self._grammar([t["function"]["name"] for t in tools]) if forced else None
        t0 = time.perf_counter()
        self.threads.apply(self.llm)
        out = self.llm.create_chat_completion(messages=messages, tools=tools, tool_choice="auto",
                                              temperature=0.0, max_tokens=self.max_tokens, grammar=grammar)
        latency = (time.perf_counter() - t0) * 1000
        reply = out["choices"][0]["message"].get("content") or ""
        name = parse_tool_call(reply)
        names = {i.name for i in intents}
        intent = name if name in names else OUT_OF_SCOPE
        usage = out.get("usage") or {}
        return IntentResult(intent, 1.0, [(intent, 1.0)] if intent in names else [], f"toolcall-{mode}",
                            latency, {"called": name, "reply": reply[:120],
                                      "prompt_tokens": usage.get("prompt_tokens"),
                                      "completion_tokens": usage.get("completion_tokens")})


PROVIDE = "provide_"


class ToolCallClassifier:
    """The baseline as a server NLU (`IVR_NLU_MODE=toolcall`), for `ivr bench calls` only.

    Every spoken turn costs one forced tool call on the SLM's GGUF, collect nodes included: a
    pipecat.flows node that collects a value offers a `provide_<slot>` function, so the
    session does not take its parser shortcut (`routes_every_turn`). A `provide_` call returns
    no intent and the engine then reads the value from the caller's words with the same
    parsers as ours, so task success differs only where routing differs. Keypad turns never
    reach the model, in either mode.
    """

    routes_every_turn = True

    def __init__(self, model_path: str | Path, *, n_threads: int = 1, max_threads: int = 0,
                 n_gpu_layers: int = 0) -> None:
        self.router = ToolCallRouter(model_path, n_threads=n_threads, n_gpu_layers=n_gpu_layers,
                                     max_threads=max_threads)
        self._lock = threading.Lock()

    def prepare(self, key: str, intents: Sequence[Intent]) -> None:
        """Nothing to cache ahead: llama-cpp-python reuses the common prefix by itself."""

    def classify(self, key: str, intents: Sequence[Intent], text: str, *, slot: str | None = None,
                 slot_description: str = "") -> IntentResult:
        offered = list(intents)
        if slot:
            offered.append(Intent(PROVIDE + slot, (), slot_description or f"The caller gives their {humanize(slot)}."))
        with self._lock:  # one llama context: turns of concurrent calls take their turn
            result = self.router.classify(offered, text, mode="forced")
        if result.intent.startswith(PROVIDE):
            return IntentResult(None, 1.0, [], "toolcall", result.latency_ms, result.detail)
        return result
