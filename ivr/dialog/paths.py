"""Which slots lie ahead: what a caller may say in passing, worked out from the flow's graph,
and what the small model is shown to fill them (the designer's marked examples).

From a node, the path ahead follows `next` (every branch, in the order written) and backend
calls, collecting each `collect` node's slot in the order the flow would ask, and stops at the
next menu (a node with intents or keys), a transfer, a handoff or a hang-up. From a menu, each
intent's path starts at its `goto`. Sensitive slots are left out: they are asked at their own
node, where recording and log redaction apply (docs/flows.md section 5); so are nodes that ask
whatever was said before (`heard: ask`, the default for yes/no slots).
"""

from __future__ import annotations

from ivr.nlu.understanding import MODEL_TYPES, ExtractionPlan, Shot, SlotSpec

from .loader import LoadedFlow
from .schema import Branch, ElseBranch, Flow, Node, SlotDef, annotated, without_values

MAX_SHOTS = 8


def heard_policy(node: Node, slot: SlotDef) -> str:
    """What a collect node does with its value said in passing (schema: `heard`). Yes/no slots
    are asked by default: most confirm something ("shall I book it?"), and a "yes" in an
    earlier sentence is not that answer."""
    return node.heard or slot.heard or ("ask" if slot.type == "yes_no" else "mention")


def _next_nodes(node: Node) -> list[str]:
    out: list[str] = []
    if isinstance(node.next, str):
        out.append(node.next)
    elif isinstance(node.next, list):
        for branch in node.next:
            if isinstance(branch, Branch):
                out.append(branch.then)
            elif isinstance(branch, ElseBranch):
                out.append(branch.else_)
    if node.action is not None and node.action.on_error:
        out.append(node.action.on_error)
    return out


def slots_ahead(flow: Flow, start: str | None) -> tuple[str, ...]:
    """The slots collected from `start` on (itself included) before the next menu."""
    order: list[str] = []
    seen: set[str] = set()
    stack = [start] if start else []
    while stack:
        name = stack.pop(0)
        if name in seen or name not in flow.nodes:
            continue
        seen.add(name)
        node = flow.nodes[name]
        if node.intents or node.dtmf or node.transfer or node.handoff or node.hangup:
            continue
        slot = node.collect
        if (slot and slot not in order and not flow.slots[slot].sensitive
                and heard_policy(node, flow.slots[slot]) != "ask"):
            order.append(slot)
        stack[:0] = _next_nodes(node)  # depth first: the order a caller is asked in
    return tuple(order)


def intent_slots(flow: Flow, node: str) -> dict[str, tuple[str, ...]]:
    """For a menu node: each intent (the node's and the flow's global ones) -> the slots its path
    collects. A walk over a few nodes: microseconds, so it is not cached."""
    intents = {**flow.global_intents, **(flow.nodes[node].intents or {})}
    return {name: slots_ahead(flow, spec.goto) for name, spec in intents.items() if spec.goto}


def slot_spec(flow: Flow, name: str) -> SlotSpec:
    """What the NLU is told of a slot."""
    slot = flow.slots[name]
    choices = tuple((k, tuple(v)) for k, v in (slot.choices or {}).items())
    return SlotSpec(name, slot.type, slot.description, choices, slot.length, slot.min_length, slot.max_length,
                    slot.in_the_past(name))


def extraction_plan(loaded: LoadedFlow, node_name: str, intent: str | None) -> ExtractionPlan | None:
    """What the small model may fill at a node (for a menu, after `intent`): the text slots of
    the path ahead, with the designer's examples as its worked examples. None: nothing to fill."""
    flow, node = loaded.flow, loaded.flow.nodes[node_name]
    if node.collect:
        names = [n for n in slots_ahead(flow, node_name) if n != node.collect]
    elif intent:
        names = list(intent_slots(flow, node_name).get(intent, ()))
    else:
        names = []
    specs = tuple(slot_spec(flow, n) for n in names if flow.slots[n].type in MODEL_TYPES)
    if not specs:
        return None
    wanted = {x.name for x in specs}
    shots: list[Shot] = []
    words: set[str] = set()
    # The intent's own examples (with their values, or teaching "none"), and any other example
    # that marks one of these slots: a city is said the same way in every request.
    for name, spec in {**flow.global_intents, **(node.intents or {})}.items():
        for example in spec.examples:
            plain, values = annotated(example)
            # the request's own words, not its values: with "12 Oak Street" among them, "no
            # internet at 12 Oak Street" had no word left that could be a value
            words.update(w.strip(".,!?'").lower() for w in without_values(example).split())
            mine = tuple((k, v) for k, v in values if k in wanted)
            if mine or (name == intent and not values):
                shots.append(Shot(plain, mine))
    # Mostly examples with values, some without (they teach "none"), in a fixed order.
    valued = [x for x in shots if x.values][:MAX_SHOTS - 3]
    plain_shots = [x for x in shots if not x.values][:MAX_SHOTS - len(valued)]
    chosen = sorted(valued + plain_shots, key=lambda x: x.text.lower())
    return ExtractionPlan(f"{loaded.version}:{node_name}:{intent or ''}", specs, tuple(chosen), frozenset(words))


def explain(flow: Flow) -> dict[str, dict[str, tuple[str, ...]]]:
    """Every listening node -> what a caller may say there in passing: per intent for a menu,
    under its own slot for a collect node (`ivr validate --explain`)."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, node in flow.nodes.items():
        if node.intents:
            paths = {k: v for k, v in intent_slots(flow, name).items() if v}
            if paths:
                out[name] = paths
        elif node.collect:
            ahead = tuple(n for n in slots_ahead(flow, name) if n != node.collect)
            if ahead:
                out[name] = {node.collect: ahead}
    return out


def extraction_plans(loaded: LoadedFlow) -> list[ExtractionPlan]:
    """Every question's and menu intent's small-model extraction, prepared when a flow loads."""
    plans = []
    for name, node in loaded.flow.nodes.items():
        if node.collect:
            intents: list[str | None] = [None]
        elif node.intents:
            intents = list({**loaded.flow.global_intents, **node.intents})
        else:
            continue
        plans += [plan for intent in intents if (plan := extraction_plan(loaded, name, intent)) is not None]
    return plans
