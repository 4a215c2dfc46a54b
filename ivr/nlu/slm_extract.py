"""The small model fills the text slots the parsers can't: names, places, things
(`ivr.nlu.understanding.MODEL_TYPES` says why only those).

One cached prompt per menu intent or collect node (like the verify prompt, `ivr.nlu.slm`): the
form's fields with the designer's descriptions, a worked example, and the designer's own
example requests, with the values they mark or `none` (requests without values are the common
case, and a small model that has seen none of them invents values). A turn evaluates only the
caller's words, then reads the answer, `none` or a line for each field said:

    city: Pleasanton
    cuisine: Filipino

with decoding held to a grammar built for this turn: the next line is one of the fields not yet
given (or the end), and a value is a run of the caller's own words, so every value is grounded
in what was said by construction, and a value that does not parse as its slot's type is
dropped. The word the caller said right before a place checks which slot the model gave it
(`ivr.nlu.places.cued_slot`: "from Vancouver" is where a trip starts). Tokens the grammar
forces (the rest of a field's name, the rest of a word once it is the only one that fits) are
evaluated in one batch; the model is consulted only where there is a choice (~25 ms each with
Qwen2.5-0.5B on two cores): one decision for a turn that carries nothing, about three for each
value it carries.

`likely_carries_values` is the gate in front: the model is asked only when the turn has words
that are neither common words, nor the menu's own request words, nor values the parsers placed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ivr.nlu.extract import value_word
from ivr.nlu.places import cued_slot
from ivr.nlu.slm_prompts import clean_text
from ivr.nlu.slots import parse_slot
from ivr.nlu.understanding import Shot, SlotSpec, SlotValue
from ivr.nlu.vocabulary import ADDRESS_WORDS, COMMON, STREET, WORD, slot_words

MAX_SPAN_WORDS = 6
_END = "<end>"

SYSTEM = (
    "You fill in a form for a phone line from what the caller said. The fields:\n{fields}\n\n"
    "If the caller said none of the fields, answer none. Otherwise write a line for each field "
    "the caller said: the field, a colon, and the caller's own words that give its value. Leave "
    "out the fields the caller did not say; never guess a value.\n\n"
    "Example, for the fields destination and passenger_name:\n"
    'Caller: "I need a cab to the airport, it\'s for Maria"\n'
    "destination: the airport\npassenger_name: Maria"
)


def spec_key(specs: Sequence[SlotSpec]) -> str:
    return "|".join(f"{s.name}:{s.type}" for s in specs)


def field_line(spec: SlotSpec) -> str:
    text = f"- {spec.name}"
    if spec.description:
        text += f": {clean_text(spec.description)}"
    return text


def likely_carries_values(text: str, request_words: frozenset[str], claimed: Sequence[tuple[int, int]]) -> bool:
    """Whether the turn has words left that could be a value: not common, not the menu's own
    words, not inside a span the parsers placed, and not a word of the parsers' values (the
    "three" of a time answered, the "afternoon" after "tomorrow", a year): a text slot's value
    needs a word of its own."""
    for m in WORD.finditer(text):
        if any(a <= m.start() < b for a, b in claimed):
            continue
        w = m.group(0).lower().strip(".'")
        if w and w not in COMMON and w not in request_words and not value_word(w):
            return True
    return False


def words_of(examples: Sequence[str]) -> frozenset[str]:
    return frozenset(m.group(0).lower().strip(".'") for e in examples for m in WORD.finditer(e))


def answer_text(specs: Sequence[SlotSpec], values: Sequence[tuple[str, str]]) -> str:
    """What the model should answer: `none`, or a line for each field said, in the form's order."""
    said = dict(values)
    lines = [f"{x.name}: {said[x.name]}\n" for x in specs if x.name in said]
    return "".join(lines) or "none"


@dataclass
class _Trie:
    children: dict[int, "_Trie"] = field(default_factory=dict)
    value: str | None = None  # set where a candidate's tokens end


@dataclass(frozen=True)
class _Span:
    said: str
    start: int  # character offsets in the caller's words
    end: int
    first: int  # word indexes, inclusive
    last: int


def _spans(text: str, *, names_only: bool = False) -> list[_Span]:
    """Every run of up to MAX_SPAN_WORDS of the caller's words, as said (case kept). With
    `names_only`, runs that begin and end with a capitalised word that is not a common one
    ("Taste of Burma", "San Jose"), as whisper writes names, or begin with a house number."""
    words = [(m.group(0).rstrip(".,"), m.start()) for m in WORD.finditer(text)]

    def name_like(k: int) -> bool:
        """Capitalised and not a common word; or a common word capitalised where a sentence does
        not begin, which is how names that hold one are written ("New York", "The Palms")."""
        w, at = words[k]
        if not w[:1].isupper():
            return False
        if w.lower().strip("'") not in COMMON:
            return True
        opens = not text[:at].strip() or text[:at].rstrip()[-1] in ".!?\"'"
        return not opens and not re.fullmatch(r"I(?:'[a-z]+)?", w)

    out = []
    for i in range(len(words)):
        # a name may begin with a number: the house number of an address ("379 Gellert Boulevard")
        if names_only and not (name_like(i) or (words[i][0][:1].isdigit() and i + 1 < len(words) and name_like(i + 1))):
            continue
        for j in range(i, min(len(words), i + MAX_SPAN_WORDS)):
            if j > i and re.search(r"[.!?]\s", text[words[j - 1][1]:words[j][1]]):
                break  # a value does not run on into the next sentence
            # ... and may end in a number after a name: "Suite 109", "Route 66"
            numbered = j > i and words[j][0][:1].isdigit() and words[j - 1][0][:1].isupper()
            if names_only and not (name_like(j) or numbered):
                continue
            said = " ".join(w for w, _ in words[i:j + 1])
            out.append(_Span(said, words[i][1], words[j][1] + len(words[j][0]), i, j))
    return out


class SlotExtractor:
    """Grounded slot filling on the SLM scorer's model, prompt cache and lock."""

    def __init__(self, scorer, none_bias: float = -1.0, end_bias: float = 3.0):
        """none_bias: added to the logit of answering `none` at the first decision (does the
        turn carry any value); end_bias: added to ending the answer after a value. The model
        leans to `none` after the designer's examples without values, and to going on once it
        has started: a wrong value costs the caller a correction, a missed one only the question."""
        self.scorer = scorer
        self.none_bias = none_bias
        self.end_bias = end_bias
        self._names: dict[tuple[str, str], dict[str, bool]] = {}
        self._newline = scorer._tok("\n", False)
        self._none = scorer._tok("none", False)[0]
        self._end = scorer._tok("<|im_end|>", True)[0]

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
        marked: dict[str, list[str]] = {}
        for shot in shots:
            for slot, said in shot.values:
                marked.setdefault(slot, []).append(said)
        # The designer's examples say what a value looks like: all capitalised means names. A slot
        # with none marked is read as names too: said in passing, its value is a name or an
        # address ("Eliquis", "CVS", "379 Gellert Boulevard"), and without that rule the model
        # took "my house", "whichever is faster" and "not exactly" for a delivery address.
        self._names[pkey] = {x.name: all(v[:1].isupper() or v[:1].isdigit() for v in marked.get(x.name, ()))
                             for x in specs}  # all() of none marked: names
        self.scorer._install(pkey, _Prompt([x.name for x in specs], self._prompt_tokens(specs, shots), []))

    def _trie(self, candidates: dict[str, list[int]]) -> _Trie:
        root = _Trie()
        for label, tokens in candidates.items():
            node = root
            for tok in tokens:
                node = node.children.setdefault(tok, _Trie())
            node.value = label
        return root

    def _walk(self, root: _Trie, pending: list[int], deadline: float | None) -> tuple[str | None, list[int]]:
        """Follow the grammar from `root`: forced tokens are queued, the model picks where there
        is a choice. Returns the label reached (None past the deadline) and the tokens queued."""
        node = root
        while node.children:
            ids = list(node.children)
            if len(ids) > 1:
                best = self._choose(pending, ids, deadline)
                if best is None:
                    return None, pending
                pending = []
            else:
                best = ids[0]
            pending = pending + [best]
            node = node.children[best]
        return node.value, pending

    def extract(self, key: str, specs: Sequence[SlotSpec], ask: Sequence[SlotSpec], text: str,
                shots: Sequence[Shot] = (), deadline: float | None = None,
                request_words: frozenset[str] = frozenset(),
                claimed: Sequence[tuple[int, int]] = ()) -> list[SlotValue]:
        """Values for the slots in `ask` (a subset of the prompt's `specs`: the ones the parsers
        left), from `text`. Past `deadline` (time.monotonic()) it stops with what it has.

        A value is a run of the caller's words that no other slot took and the parsers did not
        place (`claimed`, character spans), with a word that is neither common nor one of the
        menu's `request_words`; for a slot whose marked examples are all capitalised (a name,
        a city), a capitalised run.

        The answer is `none`, or lines `field: value` for the fields said: the model picks the
        next field (or the end), then the value, so a turn costs about one decision per field
        said plus one, not one per field of the form."""
        s = self.scorer
        self.prepare(key, specs, shots)
        pkey = ("extract", f"{key}|{spec_key(specs)}")
        prompt = s._prompts[pkey]
        words = clean_text(text)
        names = self._names.get(pkey, {})
        taken: list[_Span] = []  # a span fills one slot only
        pending = s._tok(words, False) + s._tok('"<|im_end|>\n<|im_start|>assistant\n', True)
        by_name = {x.name: x for x in ask}
        seen: dict[str, list[int]] = {}

        def tokens(said: str) -> list[int]:  # each span is offered to every field: tokenize it once
            if said not in seen:
                seen[said] = s._tok(" " + said, False) + self._newline
            return seen[said]

        heads = {x.name: s._tok(f"{x.name}:", False) for x in ask}
        out: list[SlotValue] = []
        with s._lock:
            s._load(pkey, prompt)
            s.llm.n_tokens = len(prompt.prefix)
            s._loaded = None  # the KV now holds this turn's words too: the next use restores
            label, pending = self._walk(self._trie({"none": [self._none], **heads}), pending, deadline)
            while label not in (None, "none", _END):
                spec = by_name.pop(label)
                heads.pop(label)
                spans = {sp.said: sp for sp in _spans(words, names_only=names.get(spec.name, False))
                         if not any(a < sp.end and sp.start < b for a, b in claimed)
                         and not any(t.first <= sp.last and sp.first <= t.last for t in taken)}
                if not spans:
                    break  # nothing left to say it with: the answer ends
                said, pending = self._walk(self._trie({o: tokens(o) for o in spans}), pending, deadline)
                value = self._validated(spec, said)
                if said and not likely_carries_values(said, request_words, []):
                    value = None  # "a restaurant", "my next trip": the request's own words, not a value
                # any slot still without a value may be the one cued, even one the model named
                # and gave nothing to
                open_ = [x for x in ask if x.name != spec.name and all(v.slot != x.name for v in out)]
                twin = cued_slot(spec, open_, words, spans[said].start) if value is not None else None
                if twin is not None:  # "from SFO" given as where the trip goes: the slot cued, and
                    by_name.pop(twin.name, None)  # the slot the model named stays open
                    heads.pop(twin.name, None)
                    by_name[spec.name], heads[spec.name] = spec, s._tok(f"{spec.name}:", False)
                    spec = twin
                if value is not None:
                    taken.append(spans[said])
                    out.append(SlotValue(spec.name, value, said, "model", text.find(said)))
                if not heads:
                    break
                label, pending = self._walk(self._trie({_END: [self._end], **heads}), pending, deadline)
        return out

    def _choose(self, pending: list[int], ids: list[int], deadline: float | None) -> int | None:
        """Evaluate `pending` and pick the likeliest of `ids`, with the biases for stopping."""
        import llama_cpp

        s = self.scorer
        if deadline is not None and time.monotonic() > deadline:
            return None
        s.threads.apply(s.llm)
        s.llm.eval(pending)
        ptr = llama_cpp.llama_get_logits_ith(s.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(s.llm.n_vocab(),))[ids].astype(np.float64)
        for k, tok in enumerate(ids):
            if tok == self._none:
                logits[k] += self.none_bias
            elif tok == self._end:
                logits[k] += self.end_bias
        return ids[int(np.argmax(logits))]

    @staticmethod
    def _validated(spec: SlotSpec, said: str | None):
        if not said:
            return None
        if _is_address(spec) and not (re.search(r"\d", said) or any(w in STREET for w in said.lower().split())):
            return None  # an address has a number or a street in it: not "RX" of "RX 1234567"
        result = parse_slot(spec.type, said, length=spec.length, min_length=spec.min_length,
                            max_length=spec.max_length, choices=spec.choice_map, past=spec.past)
        return result.value if result.ok else None


def _is_address(spec: SlotSpec) -> bool:
    return spec.type == "text" and bool(ADDRESS_WORDS & set(slot_words(spec)))
