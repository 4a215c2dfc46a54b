"""`ivr review`: the turns worth a human look, from the call log of every instance, with similar
turns grouped and the biggest groups first (issue #23).

Each group shows how many turns it holds, why they are in the queue, what the line did with
them (the intent it chose, or out of scope), the node and flow version they were said at, and
a few of the turns with their call ids (`ivr calls show ID` for the whole call). Grouping is
ivr/nlu/grouping.py on the embedder the router uses; the queue is
ivr/calllog/review_queue.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ivr.calllog.review_queue import REASONS
from ivr.nlu.grouping import THRESHOLD, group_similar


def review_groups(turns: Sequence[dict], encode, threshold: float = THRESHOLD) -> list[dict]:
    """The queue's turns as groups, biggest first. `encode(texts)` gives unit vectors."""
    if not turns:
        return []
    texts = [t["text"] for t in turns]
    vectors = np.asarray(encode(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1, norms)
    groups = []
    for members in group_similar(texts, vectors, threshold):
        rows = [turns[i] for i in members]
        groups.append({
            "size": len(rows),
            "text": rows[0]["text"],  # the group's leader: what it is about
            "reasons": Counter(r for row in rows for r in row["reasons"]).most_common(),
            "did": Counter(row["intent"] or "no match" for row in rows).most_common(),
            "nodes": Counter(f"{row['flow']}:{row['node']}" for row in rows).most_common(),
            "versions": sorted({row["flow_version"] for row in rows if row["flow_version"]}),
            "turns": rows,
        })
    return groups


def accepted_turns(flows_dir) -> set[tuple[str, str]]:
    """(call, words) of every turn already accepted into a flow's reviewed examples: reviewed,
    so no longer worth a look."""
    from pathlib import Path

    from ivr.dialog.reviewed import ReviewedError, SUFFIXES, parse_reviewed

    done: set[tuple[str, str]] = set()
    for path in sorted(Path(flows_dir).rglob("*")):
        if path.name.endswith(SUFFIXES):
            try:
                done |= {(ex.call or "", ex.text) for ex in parse_reviewed(path.read_text())}
            except (OSError, ReviewedError):
                continue  # the loader reports a broken file; the queue still shows its turns
    return done


def not_yet_reviewed(turns: Sequence[dict], done: set[tuple[str, str]]) -> list[dict]:
    return [t for t in turns if (t["call_id"], t["text"]) not in done]


def _since(value: str | None) -> float | None:
    """`7d`, `12h`, `30m`, or epoch seconds."""
    if not value:
        return None
    units = {"d": 86400, "h": 3600, "m": 60}
    if value[-1:] in units:
        return time.time() - float(value[:-1]) * units[value[-1]]
    return float(value)


def format_groups(groups: list[dict], *, total: int, shown: int, examples: int = 4) -> list[str]:
    lines = [f"{total} turns to review in {len(groups)} groups" + (f" (the {shown} biggest below)" if shown < len(groups) else "")]
    for n, g in enumerate(groups[:shown], 1):
        reasons = ", ".join(f"{REASONS.get(r, r).split(':')[0]} {c}" for r, c in g["reasons"])
        did = ", ".join(f"{i} {c}" for i, c in g["did"])
        where = ", ".join(f"{node} {c}" for node, c in g["nodes"])
        lines.append(f"\n{n}. {g['size']} turn{'s' if g['size'] > 1 else ''} like \"{g['text']}\"")
        lines.append(f"   why: {reasons} · the line chose: {did} · at: {where}")
        for row in g["turns"][:examples]:
            conf = f"{row['confidence']:.2f}" if isinstance(row.get("confidence"), (int, float)) else "-"
            lines.append(f"   - \"{row['text']}\" -> {row['intent'] or 'no match'} {conf}  "
                         f"(turn {row['call_id']}:{row['seq']})")
        if g["size"] > examples:
            lines.append(f"   ... and {g['size'] - examples} more")
    return lines


def run(args) -> int:
    from ivr.calllog.store import open_store
    from ivr.nlu.embedder import load_embedder
    from ivr.serving.config import load_settings

    settings = load_settings(args.config)
    store = open_store(args.db or settings.database, recover=False)
    if args.action == "accept":
        try:
            return _accept(args, settings, store)
        finally:
            store.close()
    try:
        turns = store.review_queue(since=_since(args.since), flow=args.flow, limit=args.limit)
    finally:
        store.close()
    turns = not_yet_reviewed(turns, accepted_turns(args.flows or settings.flows_dir))
    groups = review_groups(turns, load_embedder().encode, args.threshold) if turns else []
    if args.json:
        print(json.dumps({"total": len(turns), "groups": groups[:args.groups]}, default=str, indent=2))
    else:
        print("\n".join(format_groups(groups, total=len(turns), shown=args.groups)))
    return 0


def _accept(args, settings, store) -> int:
    import getpass
    import sys
    from pathlib import Path

    from ivr.nlu.intents import load_intent_classifier
    from ivr.nlu.service import NLUService
    from ivr.tools.review_accept import AcceptError, accept

    if len(args.rest) < 2:
        print("ivr review accept INTENT TURN [TURN ...]: an intent (or out_of_scope) and turns as `ivr review` "
              "names them (CALL:SEQ)", file=sys.stderr)
        return 2
    intent, turn_ids = args.rest[0], args.rest[1:]
    classifier = load_intent_classifier(use_slm=not args.no_slm)
    try:
        proof, lines = accept(store, Path(args.flows or settings.flows_dir), intent, turn_ids,
                              by=args.by or getpass.getuser(), classifier=classifier,
                              nlu=NLUService(classifier, timeout=None), dry_run=args.dry_run)
    except AcceptError as exc:
        print(f"ivr review accept: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 1 if proof.test_failures else 0


def add_parser(sub) -> None:
    p = sub.add_parser("review", help="turns worth a human look, grouped (list); accept INTENT TURN...: make them "
                                      "examples, proven on the flow's tests first")
    p.add_argument("action", nargs="?", choices=["list", "accept"], default="list")
    p.add_argument("rest", nargs="*", help="accept: INTENT (or out_of_scope) then turns as CALL:SEQ")
    p.add_argument("--by", help="accept: who accepts them (default: your user name)")
    p.add_argument("--dry-run", action="store_true", help="accept: prove the change, write nothing")
    p.add_argument("--no-slm", action="store_true", help="accept: route with the example router alone")
    p.add_argument("--flows", help="the flows folder, whose reviewed examples are left out of the queue and where accept writes (default: the server's)")
    p.add_argument("--flow", help="one flow only")
    p.add_argument("--since", help="7d, 12h, 30m or epoch seconds (default: all)")
    p.add_argument("--limit", type=int, default=10_000, help="turns at most, newest first (default 10000)")
    p.add_argument("--groups", type=int, default=20, help="groups shown (default 20)")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help=f"how similar turns must be to share a group (cosine, default {THRESHOLD})")
    p.add_argument("--db", help="call log (default: the server's, IVR_DATABASE_URL or the data directory)")
    p.add_argument("--config", help="settings file (TOML)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
