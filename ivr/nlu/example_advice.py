"""What a designer should change in a menu's examples, from what the router made of them.

The router learns an intent from its examples alone, so a menu written with three or four tidy
examples per intent ("refill my prescription", "prescription refill") turns away most callers,
who say what happened to them in their own words ("I'm almost out of my blood pressure pills").
Measured on ten menus of businesses the router was never tuned on (dentist, vet, plumber,
pharmacy, airline, utility, gym, garage, cinema, town hall; 41 intents of 3-5 examples, 164
callers' requests and 80 out-of-scope ones written apart from the examples): 39% of the
requests were routed right. Adding varied examples, written without seeing the requests, took
it to 62% with one more per intent, 76% with two, 89% with four and 93% with six; out-of-scope
recall went from 92% to 84-86%. The five intents whose examples were near-paraphrases of each
other (mean cosine 0.74-0.81) routed none of their callers. On Banking77 (menus 1-2, seeds
0-2), a first wording and the 3 requests nearest it per intent (mean cosine 0.88) route 26-33%
of in-menu requests, against 85-89% for 4 drawn at random (0.63): `ivr bench nlu --tidy`
(docs/nlu.md, "Few and tidy examples"). Banking77's
intents are narrow, so real callers' wordings of one are alike too: at 0.7, 2-3 of its 10
intents are flagged with random examples, at 0.5 more than half (docs/flows.md, "How intents
are recognised").

Pure: reads a menu's calibration (ivr/nlu/router.py `intent_examples`, `intent_alike`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

#: An intent with fewer examples than this is flagged (89% of requests routed at 7-9 above).
ENOUGH_EXAMPLES = 8
#: ... and one whose examples are this alike on average (cosine between them).
TOO_ALIKE = 0.7


@dataclass(frozen=True)
class ExampleAdvice:
    intent: str
    examples: int
    alike: float | None

    @property
    def few(self) -> bool:
        return self.examples < ENOUGH_EXAMPLES

    @property
    def same(self) -> bool:
        return self.alike is not None and self.alike >= TOO_ALIKE

    def line(self) -> str:
        said = []
        if self.few:
            said.append(f"{self.examples} example{'s' if self.examples != 1 else ''}, write {ENOUGH_EXAMPLES} or more")
        if self.same:
            said.append(f"examples alike ({self.alike:.2f}), word them as different callers would: "
                        "whole sentences about their situation")
        return f"{self.intent}: " + "; ".join(said)


def advise(calibration: Mapping, written: Mapping[str, int] | None = None) -> list[ExampleAdvice]:
    """One entry per intent whose examples are too few or too alike, in the menu's order.
    `written`: the examples the designer wrote per intent, where the router's own count holds
    more (an intent with none is routed by its name and description, which are not examples)."""
    counts = calibration.get("intent_examples") or {}
    alike = calibration.get("intent_alike") or {}
    written = written or {}
    every = (ExampleAdvice(name, written.get(name, int(n)), alike.get(name) if written.get(name, n) > 1 else None)
             for name, n in counts.items())
    return [a for a in every if a.few or a.same]


def menus_advice(classifier, menus: Iterable) -> list[tuple[ExampleAdvice, list[str]]]:
    """Advice for a flow's menus (`Candidates` with intents, prepared or not), once per intent
    however many menus offer it (a global intent is in every one), with the nodes it is in."""
    found: dict[str, tuple[ExampleAdvice, list[str]]] = {}
    for c in menus:
        classifier.prepare(c.key, list(c.intents))
        written = {i.name: len(i.examples) for i in c.intents}
        for a in advise(classifier.calibration(c.key), written):
            found.setdefault(a.intent, (a, []))[1].append(c.key.split(":", 1)[-1])
    return list(found.values())
