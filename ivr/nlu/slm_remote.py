"""The SLM's verify step on an OpenAI-compatible server instead of an in-process GGUF.

For owners who run a bigger model (Qwen2.5-3B/7B, Llama-3.2-3B, Phi) on a shared model server
(llama.cpp's server, vLLM, OpenAI itself) rather than in every IVR process: the registry's `slm`
role points at a URL (a `source = "url"` entry, or IVR_SLM_MODEL=http://host:port/v1). The
prompt is the same few-shot yes/no as the local scorer (ivr.nlu.slm.verify_shots), sent as chat
messages so the server applies the model's own chat template, and the answer is read from the
first token's log-probabilities (`logprobs` + `top_logprobs`), which every one of those servers
returns; the server's prompt cache keeps the per-menu prefix warm the way the local KV state
does. llama-cpp-python's own server only returns log-probabilities when started with
`--logits_all true`; a server that returns none still works: its one-token answer counts as
a firm yes or no (VERDICT_LOG_ODDS).

Same interface as SlmScorer (prepare / verify / prompt_tokens), blocking like it: the classifier
calls it on the NLU worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Collection, Sequence

from ivr.nlu.slm_prompts import VERIFY_SYSTEM, SlmBudgetExceeded, verify_question, verify_shots, verify_system_text

log = logging.getLogger(__name__)

#: Log-odds given to a bare "yes"/"no" when the server sends no log-probabilities.
VERDICT_LOG_ODDS = 4.0
#: Floor for a label missing from the top log-probabilities (it was less likely than all of them).
MISSING_LOGPROB = -20.0


class RemoteSlmError(RuntimeError):
    """The model server could not answer (down, timeout, or a reply without a yes/no)."""


class RemoteSlmScorer:
    def __init__(self, base_url: str, model: str | None = None, *, api_key: str = "not-needed",
                 timeout: float = 5.0, shots: int = 4, none_shots: int = 4, top_logprobs: int = 10,
                 client=None):
        from openai import OpenAI

        t0 = time.perf_counter()
        self.base_url = base_url
        self.client = client or OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.model = model or self._first_model()
        self.shots = shots
        self.none_shots = none_shots
        self.top_logprobs = top_logprobs
        self._prompts: dict[str, tuple[tuple, list[dict]]] = {}
        self.model_path = None
        self.load_seconds = time.perf_counter() - t0

    def _first_model(self) -> str:
        try:
            models = list(self.client.models.list())
        except Exception as exc:
            raise RemoteSlmError(f"SLM server {self.base_url} did not list its models: {exc}") from exc
        if not models:
            raise RemoteSlmError(f"SLM server {self.base_url} serves no model")
        return models[0].id

    def prepare(self, key: str, intents: Sequence, confusable: dict | None = None,
                modes: Sequence[str] = ("verify",), in_menu: Collection[str] = ()) -> None:
        if any(m != "verify" for m in modes):
            raise ValueError("the remote SLM supports the 'verify' mode only")
        messages = [{"role": "system", "content": verify_system_text(intents, VERIFY_SYSTEM)}]
        for text, intent, answer in verify_shots(intents, confusable, self.shots, self.none_shots, in_menu):
            messages.append({"role": "user", "content": verify_question(text, intent)})
            messages.append({"role": "assistant", "content": answer})
        self._prompts[key] = (tuple(intents), messages)
        # One request now: the server evaluates and caches the prefix before the first caller.
        first = intents[0]
        self._ask(messages + [{"role": "user", "content": verify_question(first.examples[0] if first.examples else first.name, first)}])

    def prompt_tokens(self, key: str, mode: str = "verify") -> int:
        return sum(len(m["content"]) for m in self._prompts[key][1]) // 4  # estimate: no tokenizer here

    def verify(self, key: str, text: str, name: str, deadline: float | None = None) -> float:
        """log-odds that the caller wants intent `name` (log p(yes) - log p(no))."""
        intents, messages = self._prompts[key]
        intent = next(i for i in intents if i.name == name)
        return self._ask(messages + [{"role": "user", "content": verify_question(text, intent)}], deadline)

    def _ask(self, messages: list[dict], deadline: float | None = None) -> float:
        client = self.client
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SlmBudgetExceeded("SLM budget spent before the request")
            client = client.with_options(timeout=left)
        try:
            out = client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=1, temperature=0.0,
                logprobs=True, top_logprobs=self.top_logprobs)
        except Exception as exc:
            raise RemoteSlmError(f"SLM server {self.base_url}: {exc}") from exc
        choice = out.choices[0]
        content = (choice.message.content or "").strip().lower()
        lp = getattr(choice, "logprobs", None)
        tops = []
        if lp is not None and getattr(lp, "content", None):
            tops = lp.content[0].top_logprobs or []
        yes = no = None
        for t in tops:
            tok = (t.token or "").strip().lower()
            if tok == "yes":
                yes = t.logprob if yes is None else _logaddexp(yes, t.logprob)
            elif tok == "no":
                no = t.logprob if no is None else _logaddexp(no, t.logprob)
        if yes is not None or no is not None:
            return float((yes if yes is not None else MISSING_LOGPROB) - (no if no is not None else MISSING_LOGPROB))
        if content.startswith("yes"):
            return VERDICT_LOG_ODDS
        if content.startswith("no"):
            return -VERDICT_LOG_ODDS
        raise RemoteSlmError(f"SLM server {self.base_url} answered {content!r}, not yes or no")


def _logaddexp(a: float, b: float) -> float:
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))
