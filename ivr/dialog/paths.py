"""Which slots lie ahead: what a caller may say in passing, worked out from the flow's graph.

From a node, the path ahead follows `next` (every branch, in the order written) and backend
calls, collecting each `collect` node's slot in the order the flow would ask, and stops at the
next menu (a node with intents or keys), a transfer, a handoff or a hang-up. From a menu, each
intent's path starts at its `goto`. Sensitive slots are left out: they are asked at their own
node, where recording and log redaction apply (docs/flows.md section 5); so are nodes that ask
whatever was said before (`heard: ask`, the default for yes/no slots).
"""

from __future__ import annotations

from .schema import Branch, ElseBranch, Flow, Node, SlotDef


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
    """For a menu node: each intent (the node's and the flow's global ones) -> the slots its path collects."""
    intents = {**flow.global_intents, **(flow.nodes[node].intents or {})}
    return {name: slots_ahead(flow, spec.goto) for name, spec in intents.items() if spec.goto}


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
