"""The small language model's prompts, shared by the in-process scorer (ivr.nlu.slm) and the
model-server one (ivr.nlu.slm_remote): the system texts, the verify question and its few-shot
examples, and the budget error both raise."""

from __future__ import annotations

import string
from typing import Collection, Sequence

from ivr.nlu.router import humanize

LETTERS = string.ascii_uppercase

DEFAULT_SYSTEM = (
    "You are the call router of an automated phone line. Read what the caller said and choose "
    "the one option that matches their request. If the request matches none of the options, "
    "choose {none_letter}. Answer with the option letter only.\n\nOptions:\n{options}"
)

# Background phrases used as "none of these" shots: a fixed, varied handful.
NONE_SHOTS: tuple[str, ...] = (
    "what's the weather like today",
    "tell me a joke",
    "I want to order a pizza",
    "who won the game last night",
    "can I book a flight to london",
    "how are you doing today",
)


VERIFY_SYSTEM = (
    "You screen calls for a phone menu. The menu handles exactly these requests:\n{options}\n\n"
    "You get what the caller said and one request from the menu. Answer yes if the caller wants "
    "exactly that request. Answer no if they want something else, even something related or "
    "something the menu does not handle."
)


def none_phrases(n: int, in_menu: Collection[str] = ()) -> list[str]:
    """The first n background phrases the menu does not handle itself: on a pizza line "I want
    to order a pizza" is its own request, not an example of "none" (`in_menu`: the router's
    `background_in_menu` for the menu)."""
    return [t for t in NONE_SHOTS if t not in in_menu][:max(n, 0)]


def clean_text(text: str) -> str:
    """The caller's words must not close the turn or open a new one (ChatML markers)."""
    return " ".join(text.replace("<|", "< |").replace("|>", "| >").split())


def verify_system_text(intents: Sequence, template: str = VERIFY_SYSTEM) -> str:
    options = "\n".join(f"- {clean_text(i.description or humanize(i.name))}" for i in intents)
    return template.format(options=options)


def verify_question(text: str, intent) -> str:
    label = intent.description or humanize(intent.name)
    return f'Caller: "{clean_text(text)}"\nRequest: {clean_text(label)}'


def verify_shots(intents: Sequence, confusable: dict | None, shots: int, none_shots: int,
                 in_menu: Collection[str] = ()) -> list[tuple[str, object, str]]:
    """Few-shot (caller text, intent asked about, "yes"/"no") for the verify prompt: each
    example paired with its own intent (yes) or, alternately, with the intent the router
    confuses it with (no), plus background phrases (no; none the menu handles itself,
    `none_phrases`), round-robin over the intents so no intent sits last. Pure: the local and
    the remote scorer share it."""
    names = [i.name for i in intents]
    by_name = {i.name: i for i in intents}
    per = [[e for e in i.examples if e.strip()][:shots] for i in intents]
    out: list[tuple[str, object, str]] = []
    nones = none_phrases(none_shots, in_menu)
    rounds = max([len(p) for p in per] + [0])
    for j in range(max(rounds, len(nones))):
        for k, exs in enumerate(per):
            if j >= len(exs):
                continue
            if (j + k) % 2 == 0 or len(intents) < 2:
                out.append((exs[j], intents[k], "yes"))
            else:
                others = list((confusable or {}).get(names[k], [])) or [
                    names[(k + d) % len(names)] for d in range(1, len(names))
                ]
                other = by_name[others[(j // 2) % len(others)]]
                out.append((exs[j], other, "no"))
        if j < len(nones):
            out.append((nones[j], intents[j % len(intents)], "no"))
    return out


class SlmBudgetExceeded(TimeoutError):
    """The turn's time for the SLM ran out; the router's answer stands."""


#: Suffix tokens evaluated between deadline checks (~0.2 s a chunk on one AVX2 core in Q8_0; 8 cost 37% more than one batch, measured).
