"""The small language model's intent scorer (llama-cpp-python, a ChatML GGUF such as Qwen2.5).

For each menu (key) a few-shot ChatML prompt is built once from the designer's examples and
evaluated at `prepare`; its KV cache is saved per key (llama.cpp sequence state, ~12 KB a token
for Qwen2.5-0.5B, so ~17 MB for a 10-intent menu) and restored in milliseconds when a turn for
another key comes, so a turn evaluates only the caller's words and the question around them.

Two prompt kinds (see `SlmScorer`): "verify" asks yes/no about one intent (what the classifier
uses, on the router's best guess); "choose" scores all intents plus "none of these" by the
next-token likelihood of their option letters (the SLM-only baseline).

llama.cpp contexts are not thread-safe: every use of the model holds `self._lock`.
Facts honoured here (docs/architecture.md, "The small language model in process"): `Llama(..., n_threads=2, verbose=False)`, no
`logits_all=True`, no per-turn `save_state`/`load_state`; logits are read with
`llama_get_logits_ith(ctx, -1)` after `llm.n_tokens = n_prefix; llm.eval(tokens)`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from ivr.nlu.cpu_threads import LlamaThreads, ThreadPolicy
from ivr.nlu.router import humanize
from ivr.nlu.slm_prompts import (
    DEFAULT_SYSTEM,
    LETTERS,
    VERIFY_SYSTEM,
    SlmBudgetExceeded,
    clean_text,
    none_phrases,
    verify_shots,
    verify_system_text,
)
from ivr.nlu.understanding import OUT_OF_SCOPE

log = logging.getLogger(__name__)

EVAL_CHUNK = 16


@dataclass
class _Prompt:
    names: list[str]  # option order; for "choose" the last is OUT_OF_SCOPE
    prefix: list[int]
    label_ids: list[int]
    state: bytes | None = None
    prefix_seconds: float = 0.0
    from_disk: bool = False


def default_state_dir() -> Path:
    return Path(os.environ.get("IVR_CACHE_DIR", Path.home() / ".cache" / "ivr")) / "slm-prefix"


class SlmScorer:
    """Scores a menu's intents with a small ChatML model, one cached prompt per menu.

    Two prompts, both few-shot from the designer's examples:
      verify  (what the classifier uses): "the caller said X; is it request Y? yes/no", asked
              about the router's best guess. Shots pair each example with its own intent (yes)
              or with the intent the router confuses it with (no), plus background phrases (no),
              so "no" covers related requests the menu does not handle.
      choose  (SLM-only baseline): options as letters plus "none of these", next-token
              likelihood over the letters.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_threads: int = 2,
        max_threads: int | None = None,
        n_ctx: int = 4096,
        n_batch: int = 512,
        shots: int = 4,
        none_shots: int = 4,
        system: str = DEFAULT_SYSTEM,
        verify_system: str = VERIFY_SYSTEM,
        examples_in_options: int = 2,
        none_bias: float = 0.0,
        state_dir: str | Path | None = "default",
        state_dir_max_mb: int = 512,
        n_gpu_layers: int = 0,
    ):
        """`state_dir`: where evaluated prompt prefixes (KV state) are kept across processes,
        keyed by the model file, llama-cpp-python version, n_ctx and the prompt's tokens, so a
        restart or `ivr test` skips the cold prefix (seconds per menu). None: in memory only.

        `max_threads` above `n_threads`: a turn takes up to that many threads while the machine
        has idle cores (`cpu_threads.ThreadPolicy`), else `n_threads`."""
        import llama_cpp
        from llama_cpp import Llama

        t0 = time.perf_counter()
        self.model_path = Path(model_path)
        self.llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=n_gpu_layers,  # -1: all of them, on a CUDA build (the GPU profile)
            logits_all=False,
            verbose=False,
        )
        self.threads = LlamaThreads(ThreadPolicy(n_threads, max_threads or n_threads))
        self.shots = shots
        self.none_shots = none_shots
        self.system = system
        self.verify_system = verify_system
        self.examples_in_options = examples_in_options
        self.none_bias = none_bias
        self._lock = threading.RLock()
        self._prompts: dict[tuple[str, str], _Prompt] = {}
        self._used: dict[tuple[str, str], float] = {}  # prompt -> when a turn (or its install) last needed it
        self._intents: dict[str, tuple] = {}
        self._loaded: tuple[str, str] | None = None  # whose prefix is in the KV cache now
        self.n_ctx = n_ctx
        self.state_dir = default_state_dir() if state_dir == "default" else (Path(state_dir) if state_dir else None)
        self.state_dir_max_bytes = state_dir_max_mb << 20
        st = self.model_path.stat()
        self._model_id = f"{self.model_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{llama_cpp.__version__}|{n_ctx}"
        self._letter_ids = [self._single_token(c) for c in LETTERS]
        self._yes = self._single_token("yes")
        self._no = self._single_token("no")
        self.load_seconds = time.perf_counter() - t0

    # -- tokens -----------------------------------------------------------------------------
    def _tok(self, text: str, special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def _single_token(self, text: str) -> int:
        ids = self._tok(text, special=False)
        if len(ids) != 1:
            raise RuntimeError(f"label {text!r} is not a single token for this model")
        return ids[0]

    _clean = staticmethod(clean_text)

    def _turn(self, user: str) -> list[int]:
        return (
            self._tok("<|im_start|>user\n", True)
            + self._tok(self._clean(user), False)
            + self._tok("<|im_end|>\n<|im_start|>assistant\n", True)
        )

    def _question_head(self) -> list[int]:
        return self._tok('<|im_start|>user\nCaller: "', True)

    def _question_tail(self, text: str, intent) -> list[int]:
        label = intent.description or humanize(intent.name)
        # the caller's words are tokenized without special tokens, so they cannot inject any
        return self._tok(self._clean(text), False) + self._tok(
            f'"\nRequest: {self._clean(label)}<|im_end|>\n<|im_start|>assistant\n', True)

    def _question(self, text: str, intent) -> list[int]:
        return self._question_head() + self._question_tail(text, intent)

    # -- prompts ----------------------------------------------------------------------------
    def build_prompt(self, intents: Sequence, in_menu: Collection[str] = ()) -> _Prompt:
        """The "choose" prompt: letters for the options, the last one "none of these"."""
        n = len(intents)
        if n + 1 > len(LETTERS):
            raise ValueError(f"the SLM scorer handles at most {len(LETTERS) - 1} intents, got {n}")
        none_letter = LETTERS[n]
        lines = []
        for k, intent in enumerate(intents):
            desc = intent.description or humanize(intent.name)
            exs = [e for e in intent.examples if e.strip()][: self.examples_in_options]
            quoted = "; ".join(f'"{self._clean(e)}"' for e in exs)
            lines.append(f"{LETTERS[k]}) {desc}" + (f" (e.g. {quoted})" if quoted else ""))
        lines.append(f"{none_letter}) none of these: anything else (other requests, chit-chat, unrelated topics)")
        system = self.system.format(none_letter=none_letter, options="\n".join(lines))
        tokens = self._tok(f"<|im_start|>system\n{system}<|im_end|>\n", True)
        # few-shot turns, round-robin over intents so no intent sits last in the prompt
        shots: list[tuple[str, str]] = []
        per = [[e for e in i.examples if e.strip()][: self.shots] for i in intents]
        nones = none_phrases(self.none_shots, in_menu)
        rounds = max([len(p) for p in per] + [0])
        for j in range(max(rounds, len(nones))):
            for k, exs in enumerate(per):
                if j < len(exs):
                    shots.append((exs[j], LETTERS[k]))
            if j < len(nones):
                shots.append((nones[j], none_letter))
        for user, letter in shots:
            tokens += self._turn(user) + self._tok(f"{letter}<|im_end|>\n", True)
        names = [i.name for i in intents] + [OUT_OF_SCOPE]
        return _Prompt(names, tokens, self._letter_ids[: n + 1])

    def build_verify_prompt(self, intents: Sequence, confusable: dict | None = None,
                            in_menu: Collection[str] = ()) -> _Prompt:
        """The "verify" prompt. `confusable[name]` lists the other intents nearest to it, best
        first (the classifier passes what its router finds); without it, neighbours in order.
        `in_menu`: background phrases this menu handles itself, never shown as "no"."""
        system = verify_system_text(intents, self.verify_system)
        tokens = self._tok(f"<|im_start|>system\n{system}<|im_end|>\n", True)
        for text, intent, answer in verify_shots(intents, confusable, self.shots, self.none_shots, in_menu):
            tokens += self._question(text, intent) + self._tok(f"{answer}<|im_end|>\n", True)
        # Every question opens the same way, so the opening is part of the cached prefix and a
        # turn evaluates only the caller's words and the request after them (~6 tokens, ~70 ms
        # on one AVX2 core, fewer).
        tokens += self._question_head()
        return _Prompt([i.name for i in intents], tokens, [self._yes, self._no])

    # -- KV cache per prompt ----------------------------------------------------------------
    def _eval_prefix(self, prompt: _Prompt) -> None:
        import llama_cpp

        t0 = time.perf_counter()
        self.llm.reset()
        self._clear_kv()
        self.llm.eval(prompt.prefix)
        prompt.prefix_seconds = time.perf_counter() - t0
        ctx = self.llm._ctx.ctx
        try:
            size = llama_cpp.llama_state_seq_get_size(ctx, 0)
            buf = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
            prompt.state = bytes(buf[:written])
        except Exception:  # other bindings: fall back to re-evaluating on a switch
            log.debug("sequence state save unavailable", exc_info=True)
            prompt.state = None

    def _load(self, pkey: tuple[str, str], prompt: _Prompt) -> None:
        import llama_cpp

        if self._loaded == pkey:
            return
        restored = False
        if prompt.state is not None:
            self.llm.reset()
            self._clear_kv()
            buf = (ctypes.c_uint8 * len(prompt.state)).from_buffer_copy(prompt.state)
            ctx = self.llm._ctx.ctx
            n = len(prompt.prefix)
            if llama_cpp.llama_state_seq_set_data(ctx, buf, len(prompt.state), 0) and (
                llama_cpp.llama_memory_seq_pos_max(llama_cpp.llama_get_memory(ctx), 0) == n - 1
            ):
                self.llm.input_ids[:n] = prompt.prefix
                self.llm.n_tokens = n
                restored = True
        if not restored:
            prompt.from_disk = False
            self._eval_prefix(prompt)
        self._loaded = pkey

    def _clear_kv(self) -> None:
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.llm._ctx.ctx), True)

    def _next_logits(self, pkey: tuple[str, str], suffix: list[int], ids: list[int],
                     deadline: float | None = None) -> np.ndarray:
        """Logits of `ids` after prefix + suffix. With a `deadline` (time.monotonic()), the
        suffix is evaluated in chunks and SlmBudgetExceeded is raised once it has passed: a
        long utterance or a busy CPU costs the turn its SLM opinion, not the caller's time."""
        import llama_cpp

        prompt = self._prompts.get(pkey)
        if prompt is None:
            raise KeyError(f"SLM prompt {pkey!r} not prepared")
        self._used[pkey] = time.monotonic()
        if len(prompt.prefix) + len(suffix) >= self.n_ctx:
            suffix = suffix[: self.n_ctx - len(prompt.prefix) - 1]
        with self._lock:
            self._load(pkey, prompt)
            self.llm.n_tokens = len(prompt.prefix)
            if deadline is None:
                self.threads.apply(self.llm)
                self.llm.eval(suffix)
            else:
                for i in range(0, len(suffix), EVAL_CHUNK):
                    if time.monotonic() > deadline:
                        # eval() drops KV entries past n_tokens first, so the next turn is clean
                        raise SlmBudgetExceeded(f"SLM budget spent after {i} of {len(suffix)} tokens")
                    self.threads.apply(self.llm)  # per chunk: a job starting mid-turn costs one
                    self.llm.eval(suffix[i:i + EVAL_CHUNK])
            ptr = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
            logits = np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),))
            return logits[ids].astype(np.float64)

    def _install(self, pkey: tuple[str, str], prompt: _Prompt) -> None:
        if len(prompt.prefix) + 256 > self.n_ctx:
            raise ValueError(f"SLM prompt {pkey!r} is {len(prompt.prefix)} tokens; n_ctx is {self.n_ctx}")
        with self._lock:
            old = self._prompts.get(pkey)
            if old is not None and old.prefix == prompt.prefix and old.names == prompt.names:
                return
            t0 = time.perf_counter()
            path = self._state_path(prompt)
            if path is not None and path.exists():
                try:
                    prompt.state = path.read_bytes()
                    prompt.from_disk = True
                    os.utime(path)  # recently used: last to be dropped
                except OSError:
                    prompt.state = None
            if prompt.state is not None:
                self._loaded = None
                self._load(pkey, prompt)  # restores the state, or evaluates if it will not load
                if prompt.prefix_seconds == 0.0:
                    prompt.prefix_seconds = time.perf_counter() - t0
            else:
                self._eval_prefix(prompt)
            if path is not None and prompt.state is not None and not prompt.from_disk:
                self._save_state(path, prompt.state)
            self._prompts[pkey] = prompt
            self._used[pkey] = time.monotonic()
            self._loaded = pkey
        log.info("SLM prompt %r: %d tokens, %.2f s%s", pkey, len(prompt.prefix), prompt.prefix_seconds,
                 " (from disk)" if prompt.from_disk else "")

    def _state_path(self, prompt: _Prompt) -> Path | None:
        if self.state_dir is None:
            return None
        h = hashlib.sha256(self._model_id.encode())
        h.update(np.asarray(prompt.prefix, dtype=np.int64).tobytes())
        return self.state_dir / f"{h.hexdigest()[:32]}.kv"

    def _save_state(self, path: Path, state: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(state)
            os.replace(tmp, path)
            # keep the directory bounded: drop the least recently written states
            files = sorted(path.parent.glob("*.kv"), key=lambda f: f.stat().st_mtime, reverse=True)
            total = 0
            for f in files:
                total += f.stat().st_size
                if total > self.state_dir_max_bytes and f != path:
                    f.unlink(missing_ok=True)
        except OSError:
            log.warning("could not keep the SLM prompt state in %s", path.parent, exc_info=True)

    # -- public -----------------------------------------------------------------------------
    @staticmethod
    def _named(pkey: tuple[str, str]) -> str:
        """The key a prompt was prepared under ("VERSION:node..."), whatever its kind."""
        return pkey[1].split("|", 1)[0] if pkey[0] == "extract" else pkey[0]

    def last_used(self) -> dict[str, float]:
        """Per flow version, when a turn last needed one of its prompts (menus' and slot
        extraction's: a flow that only collects values has no menu to say so)."""
        last: dict[str, float] = {}
        for pkey in list(self._prompts):
            version = self._named(pkey).split(":", 1)[0]
            last[version] = max(last.get(version, 0.0), self._used.get(pkey, 0.0))
        return last

    def forget(self, version_of_key) -> int:
        """Drop the prompts (and their KV state) of the keys `version_of_key(key)` is true for:
        a flow version nothing uses any more. Their states on disk stay (bounded there)."""
        with self._lock:
            gone = [p for p in self._prompts if version_of_key(self._named(p))]
            for pkey in gone:
                del self._prompts[pkey]
                self._used.pop(pkey, None)
                if self._loaded == pkey:
                    self._loaded = None
            for key in [k for k in self._intents if version_of_key(k)]:
                del self._intents[key]
        return len(gone)

    def prepare(self, key: str, intents: Sequence, confusable: dict | None = None,
                modes: Sequence[str] = ("verify",), in_menu: Collection[str] = ()) -> None:
        """Build and evaluate the prompt(s) for a menu, keeping their KV state (seconds, once).
        `in_menu`: background phrases this menu handles itself (the router's
        `background_in_menu`), never shown as "none"."""
        self._intents[key] = (tuple(intents), confusable, tuple(in_menu))
        for mode in modes:
            if mode == "verify":
                self._install((key, mode), self.build_verify_prompt(intents, confusable, in_menu))
            elif mode == "choose":
                self._install((key, mode), self.build_prompt(intents, in_menu))
            else:
                raise ValueError(f"unknown SLM prompt mode {mode!r}")

    def verify(self, key: str, text: str, name: str, deadline: float | None = None) -> float:
        """log-odds that the caller wants intent `name` (yes minus no logit)."""
        intents = self._intents[key][0]
        intent = next(i for i in intents if i.name == name)
        yes, no = self._next_logits((key, "verify"), self._question_tail(text, intent), [self._yes, self._no],
                                    deadline)
        return float(yes - no)

    def score(self, key: str, text: str) -> dict[str, float]:
        """{intent: p, ..., "out_of_scope": p} from the "choose" prompt; sums to 1."""
        if (key, "choose") not in self._prompts:
            if key not in self._intents:
                raise KeyError(f"SLM prompt {key!r} not prepared")
            intents, _confusable, in_menu = self._intents[key]
            self._install((key, "choose"), self.build_prompt(intents, in_menu))
        prompt = self._prompts[(key, "choose")]
        picked = self._next_logits((key, "choose"), self._turn(text), prompt.label_ids)
        picked[-1] += self.none_bias
        p = np.exp(picked - picked.max())
        p /= p.sum()
        return {n: float(v) for n, v in zip(prompt.names, p)}

    def prompt_tokens(self, key: str, mode: str = "verify") -> int:
        return len(self._prompts[(key, mode)].prefix)


def load_slm(registry=None, **options) -> SlmScorer:
    """The registry's `slm` role: an SlmScorer for a local GGUF with a ChatML template, or a
    RemoteSlmScorer for an OpenAI-compatible server (`source = "url"`; `options` apply to the
    local scorer only)."""
    if registry is None:
        from ivr.registry import model_registry

        registry = model_registry()
    info = registry.for_role("slm")
    if info.url:
        import os

        from ivr.nlu.slm_remote import RemoteSlmScorer

        key_env = info.extra.get("api_key_env", "IVR_SLM_API_KEY")
        remote = RemoteSlmScorer(info.url, info.extra.get("model"), api_key=os.environ.get(key_env, "not-needed"),
                                 timeout=float(info.extra.get("timeout", 1.5)))
        remote.info = info  # type: ignore[attr-defined]
        return remote  # type: ignore[return-value]
    if info.path is None:
        raise RuntimeError(f"SLM '{info.name}' is not a local GGUF (source {info.source})")
    fmt = info.extra.get("chat_format", "chatml")
    if fmt != "chatml":
        raise RuntimeError(f"SLM '{info.name}': chat_format {fmt!r} is not supported (chatml only)")
    scorer = SlmScorer(info.path, **options)
    scorer.info = info  # type: ignore[attr-defined]
    return scorer
