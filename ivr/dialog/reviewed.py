"""Examples accepted from reviewed calls (issue #23), kept in a file beside the flow:
`NAME.reviewed.yaml` next to `NAME.yaml`.

```yaml
# Examples accepted from reviewed calls: `ivr review`. Entries may be removed to undo them.
examples:
  - text: where has my parcel got to
    intent: order                 # an intent of the flow, or out_of_scope
    node: main_menu               # where it was said: the intent there (optional)
    by: session 1f3a9c2e          # who accepted it, when, and from which call
    at: "2026-12-07T07:10:00Z"
    call: CA0123456789abcdef
    change: r5c1e09aa             # the review action it came with (undone together)
```

Why a file of its own rather than the flow itself: the flow is the designer's, with their
comments, order and layout, and PyYAML cannot write a file back without losing them; a review
that rewrote it would turn every accepted example into a diff of the whole file. Here every
change is one entry, with who, when and from which call, and undoing it is deleting the entry
(or `git revert`). The loader merges the entries into the flow's intents (an intent's own
examples first), and the flow's version covers both files, so the call log says which reviews
answered a call. Pure apart from reading the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from ivr.nlu.understanding import OUT_OF_SCOPE

SUFFIXES = (".reviewed.yaml", ".reviewed.yml")


class ReviewedError(ValueError):
    pass


@dataclass(frozen=True)
class ReviewedExample:
    text: str
    intent: str
    node: str | None = None
    by: str | None = None
    at: str | None = None
    call: str | None = None
    change: str | None = None


def is_reviewed_file(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def reviewed_path(flow_path: str | Path) -> Path:
    """`bank.yaml` -> `bank.reviewed.yaml`, beside it."""
    path = Path(flow_path)
    stem = path.name.rsplit(".", 1)[0]
    return path.with_name(f"{stem}.reviewed.yaml")


def flow_path_of(path: str | Path) -> Path | None:
    """`bank.reviewed.yaml` -> `bank.yaml` (or `bank.yml`) beside it, if there is one."""
    path = Path(path)
    suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        return None
    stem = path.name[:-len(suffix)]
    return next((p for p in (path.with_name(stem + ".yaml"), path.with_name(stem + ".yml")) if p.exists()), None)


def reviewed_files(folder: str | Path) -> Iterator[tuple[Path, list[ReviewedExample]]]:
    """Every reviewed-examples file under `folder`, parsed, in name order; one that cannot be read
    or parsed is passed over (the loader reports it where the flow loads)."""
    for path in sorted(Path(folder).rglob("*")):
        if is_reviewed_file(path):
            try:
                yield path, parse_reviewed(path.read_text())
            except (OSError, ReviewedError):
                continue


def parse_reviewed(text: str) -> list[ReviewedExample]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ReviewedError(f"not valid YAML: {exc}") from None
    if isinstance(data, dict) and data.get("examples") is None:  # every entry undone
        data = {**data, "examples": []}
    if not isinstance(data, dict) or not isinstance(data["examples"], list):
        raise ReviewedError("expected a mapping with an `examples:` list")
    out = []
    for n, entry in enumerate(data.get("examples") or [], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str) or not entry["text"].strip() \
                or not isinstance(entry.get("intent"), str) or not entry["intent"]:
            raise ReviewedError(f"example {n} needs `text` and `intent`")
        out.append(ReviewedExample(entry["text"].strip(), entry["intent"],
                                   *(str(entry[k]) if entry.get(k) is not None else None
                                     for k in ("node", "by", "at", "call", "change"))))
    return out


def merge(flow, examples: list[ReviewedExample]):
    """(the flow with the accepted examples added to its intents, {node or None: out-of-scope
    examples}). A `node` entry goes to that node's intent of the name, or the global one; one
    without a node to every intent of that name. An intent the flow does not have is an error."""
    nodes = {name: dict(node.intents or {}) for name, node in flow.nodes.items()}
    global_intents = dict(flow.global_intents)
    added: dict[tuple[str | None, str], list[str]] = {}  # (node or None for global, intent) -> texts
    out_of_scope: dict[str | None, list[str]] = {}
    for n, ex in enumerate(examples, 1):
        if ex.node is not None and ex.node not in flow.nodes:
            raise ReviewedError(f"example {n} ({ex.text!r}): the flow has no node {ex.node!r}")
        if ex.intent == OUT_OF_SCOPE:
            out_of_scope.setdefault(ex.node, []).append(ex.text)
            continue
        if ex.node is not None and ex.intent in nodes[ex.node]:
            places = [(ex.node, ex.intent)]
        elif ex.intent in global_intents:
            places = [(None, ex.intent)]
        elif ex.node is None:
            places = [(name, ex.intent) for name, intents in nodes.items() if ex.intent in intents]
        else:
            places = []
        if not places:
            raise ReviewedError(f"example {n} ({ex.text!r}): no intent {ex.intent!r}"
                                + (f" at node {ex.node!r}" if ex.node else "") + " in the flow")
        for place in places:
            added.setdefault(place, []).append(ex.text)

    def grown(intent_def, texts):
        new = [t for t in texts if t not in intent_def.examples]
        return intent_def.model_copy(update={"examples": [*intent_def.examples, *new]}) if new else intent_def

    for (node, intent), texts in added.items():
        if node is None:
            global_intents[intent] = grown(global_intents[intent], texts)
        else:
            nodes[node][intent] = grown(nodes[node][intent], texts)
    new_nodes = {name: (node.model_copy(update={"intents": nodes[name]}) if node.intents else node)
                 for name, node in flow.nodes.items()}
    merged = flow.model_copy(update={"nodes": new_nodes, "global_intents": global_intents})
    return merged, {k: tuple(v) for k, v in out_of_scope.items()}
