"""The small model fills the slots the parsers can't: names, places, things, and choices said in
other words ("something cheap" for `price: moderate`).

One cached prompt per menu intent or collect node (like the verify prompt, `ivr.nlu.slm`): the
form's fields with the designer's descriptions, a worked example, and the designer's own
example requests answered with `none` everywhere (requests without values are the common case,
and a small model that has seen none of them invents values). A turn evaluates only the
caller's words, then reads each field as

    city: Pleasanton
    cuisine: none

with decoding held to a grammar built for this turn: a field's value is `none`, one of the
enum's keys, yes/no, or a run of the caller's own words, so every value is grounded in what was
said by construction, and a value that does not parse as its slot's type is dropped. Tokens the
grammar forces (the field names, the rest of a word once it is the only one that fits) are
evaluated in one batch; the model is consulted only where there is a choice, about two
decisions a field (~25 ms each with Qwen2.5-0.5B on two cores).

`likely_carries_values` is the gate in front: the model is asked only when the turn has words
that are neither common words, nor the menu's own request words, nor values the parsers placed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ivr.nlu.slm_prompts import clean_text
from ivr.nlu.slots import parse_slot
from ivr.nlu.understanding import Shot, SlotSpec, SlotValue

#: Slot types the small model fills (the parsers own the rest; yes/no only from the feature's
#: name, ivr.nlu.extract, since a model's "yes" in passing would skip a confirmation).
MODEL_TYPES = ("text", "enum")
MAX_SPAN_WORDS = 6

SYSTEM = (
    "You fill in a form for a phone line from what the caller said. The fields:\n{fields}\n\n"
    "If the caller said none of the fields, answer none. Otherwise answer every field: copy "
    "the caller's own words that give its value, or write none when the caller did not say it. "
    "For a field with options, write the option that means what the caller said. Never guess "
    "a value the caller did not say.\n\n"
    "Example, for the fields destination and passenger_name:\n"
    'Caller: "I need a cab to the airport, it\'s for Maria"\n'
    "destination: the airport\npassenger_name: Maria"
)

#: Words that carry no value of their own: function words and the verbs of asking.
COMMON = frozenset("""
a about above after again all also am an and any anything are around as at available be been
before being below between both but by can could day did do does doing done for from get getting
give go going good got had has have having hello help hey hi how i i'd i'll i'm i've if in into is
it it's its just know last let like looking make me might more most my need needs new next no not
now of off on one only or other our out over please really right say see she should so some
something somewhere soon than thank thanks that that's the their them then there these they thing
think this those time to today too try up us use very want wanted wants was way we we're well were
what when where which while who why will with would yeah yes you you're your book booking find
reserve reservation check tell show search looking look place places please sure okay ok also
""".split())
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&.-]*")


def spec_key(specs: Sequence[SlotSpec]) -> str:
    return "|".join(f"{s.name}:{s.type}" for s in specs)


def field_line(spec: SlotSpec) -> str:
    text = f"- {spec.name}"
    if spec.description:
        text += f": {clean_text(spec.description)}"
    if spec.type == "enum":
        text += " (options: " + ", ".join(k for k, _ in spec.choices) + ")"
    return text


def likely_carries_values(text: str, request_words: frozenset[str], claimed: Sequence[tuple[int, int]]) -> bool:
    """Whether the turn has words left that could be a value: not common, not the menu's own
    words, not inside a span the parsers placed."""
    for m in _WORD.finditer(text):
        if any(a <= m.start() < b for a, b in claimed):
            continue
        w = m.group(0).lower().strip(".'")
        if w and w not in COMMON and w not in request_words:
            return True
    return False


def words_of(examples: Sequence[str]) -> frozenset[str]:
    return frozenset(m.group(0).lower().strip(".'") for e in examples for m in _WORD.finditer(e))


def answer_text(specs: Sequence[SlotSpec], values: Sequence[tuple[str, str]]) -> str:
    """What the model should answer: `none`, or every field on its own line."""
    said = dict(values)
    if not any(x.name in said for x in specs):
        return "none"
    return "\n".join(f"{x.name}: {said.get(x.name, 'none')}" for x in specs)


@dataclass
class _Trie:
    children: dict[int, "_Trie"] = field(default_factory=dict)
    value: str | None = None  # set where a candidate's tokens end


def _spans(text: str) -> list[str]:
    """Every run of up to MAX_SPAN_WORDS of the caller's words, as said (case kept)."""
    words = [m.group(0).rstrip(".,") for m in _WORD.finditer(text)]
    out = []
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + MAX_SPAN_WORDS) + 1):
            out.append(" ".join(words[i:j]))
    return out


class SlotExtractor:
    """Grounded slot filling on the SLM scorer's model, prompt cache and lock."""

    def __init__(self, scorer, none_bias: float = 1.0):
        """none_bias: how much likelier (in logits) a value must be than `none` to be taken;
        a wrong value costs the caller a correction, a missed one only the usual question."""
        self.scorer = scorer
        self.none_bias = none_bias
        self._newline = scorer._tok("\n", False)
        self._none = scorer._tok("none", False)[0]
        self._space_none = scorer._tok(" none", False)[0]

    def _prompt_tokens(self, specs: Sequence[SlotSpec], shots: Sequence[Shot]) -> list[int]:
        s = self.scorer
        system = SYSTEM.format(fields="\n".join(field_line(x) for x in specs))
        tokens = s._tok(f"<|im_start|>system\n{system}<|im_end|>\n", True)
        for shot in shots:
            tokens += s._tok('<|im_start|>user\nCaller: "', True) + s._tok(clean_text(shot.text), False)
            tokens += s._tok('"<|im_end|>\n<|im_start|>assistant\n', True)
            tokens += s._tok(answer_text(specs, shot.values), False) + s._tok("<|im_end|>\n", True)
        return tokens + s._tok('<|im_start|>user\nCaller: "', True)

    def prepare(self, key: str, specs: Sequence[SlotSpec], shots: Sequence[Shot] = ()) -> None:
        from ivr.nlu.slm import _Prompt

        pkey = ("extract", f"{key}|{spec_key(specs)}")
        if pkey in self.scorer._prompts:
            return
        self.scorer._install(pkey, _Prompt([x.name for x in specs], self._prompt_tokens(specs, shots), []))

    def _trie(self, candidates: list[str]) -> _Trie:
        root = _Trie()
        for cand in candidates:
            node = root
            for tok in self.scorer._tok(" " + cand, False) + self._newline:
                node = node.children.setdefault(tok, _Trie())
            node.value = cand
        return root

    def extract(self, key: str, specs: Sequence[SlotSpec], ask: Sequence[SlotSpec], text: str,
                shots: Sequence[Shot] = (), deadline: float | None = None) -> list[SlotValue]:
        """Values for the slots in `ask` (a subset of the prompt's `specs`: the ones the parsers
        left), from `text`. Past `deadline` (time.monotonic()) it stops with what it has."""
        s = self.scorer
        self.prepare(key, specs, shots)
        pkey = ("extract", f"{key}|{spec_key(specs)}")
        prompt = s._prompts[pkey]
        spans = _spans(clean_text(text))
        pending = s._tok(clean_text(text), False) + s._tok('"<|im_end|>\n<|im_start|>assistant\n', True)
        out: list[SlotValue] = []
        with s._lock:
            s._load(pkey, prompt)
            s.llm.n_tokens = len(prompt.prefix)
            s._loaded = None  # the KV now holds this turn's words too: the next use restores
            first = s._tok(f"{specs[0].name}:", False)[0]
            if self._choose(pending, [self._none, first], deadline) == self._none:
                return out  # "none": the caller said no field at all (one decision)
            pending = [first]
            for spec in specs:
                header = s._tok(f"{spec.name}:", False)
                pending += header if spec is not specs[0] else header[1:]
                if spec not in ask:  # the parsers placed it: nothing for the model to choose
                    pending += s._tok(" none", False) + self._newline
                    continue
                if spec.type == "enum":
                    options = [key_ for key_, _ in spec.choices]
                else:
                    options = spans
                node = self._trie(["none", *options])
                while node.children:
                    ids = list(node.children)
                    if len(ids) == 1:
                        pending.append(ids[0])
                        node = node.children[ids[0]]
                        continue
                    best = self._choose(pending, ids, deadline)
                    if best is None:
                        return out
                    pending = [best]
                    node = node.children[best]
                said = node.value
                value = self._validated(spec, said)
                if value is not None:
                    start = text.find(said) if spec.type == "text" else -1
                    out.append(SlotValue(spec.name, value, said, "model", start))
        return out

    def _choose(self, pending: list[int], ids: list[int], deadline: float | None) -> int | None:
        """Evaluate `pending` and pick the likeliest of `ids`, `none` given its bias."""
        import llama_cpp

        s = self.scorer
        if deadline is not None and time.monotonic() > deadline:
            return None
        s.threads.apply(s.llm)
        s.llm.eval(pending)
        ptr = llama_cpp.llama_get_logits_ith(s.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(s.llm.n_vocab(),))[ids].astype(np.float64)
        for k, tok in enumerate(ids):
            if tok in (self._none, self._space_none):
                logits[k] += self.none_bias
        return ids[int(np.argmax(logits))]

    @staticmethod
    def _validated(spec: SlotSpec, said: str | None):
        if not said or said == "none":
            return None
        if spec.type == "enum":
            return said if said in {k for k, _ in spec.choices} else None
        result = parse_slot(spec.type, said, length=spec.length, min_length=spec.min_length,
                            max_length=spec.max_length, choices=spec.choice_map)
        return result.value if result.ok else None
