"""`ivr review`: the turns worth a human look, from the call log of every instance, with similar
turns grouped and the biggest groups first (issue #23).

Each group shows how many turns it holds, why they are in the queue, what the line did with
them (the intent it chose, or out of scope), the node and flow version they were said at, and
a few of the turns with their call ids (`ivr calls show ID` for the whole call). Grouping is
ivr/nlu/grouping.py on the embedder the router uses; the queue is
ivr/calllog/review_queue.py. The decisions (accept, undo, dismiss, propose, restore) are
ivr/review/changes.py, shared with the dashboard's Review page.
"""

from __future__ import annotations

import json
import time

from ivr.calllog.review_queue import REASONS, settled_turns
from ivr.nlu.grouping import THRESHOLD
from ivr.review.groups import accepted_turns, review_groups, reviewed


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
    from ivr.serving.config import load_settings

    settings = load_settings(args.config)
    store = open_store(args.db or settings.database, recover=False)
    try:
        if args.action != "list":
            return _decide(args, settings, store)
        seen = reviewed(accepted_turns(args.flows or settings.flows_dir),
                        settled_turns(store.review_actions(flow=args.flow, limit=None)))
        turns = store.review_queue(since=_since(args.since), flow=args.flow, limit=args.limit, skip=seen)
    finally:
        store.close()
    groups = []
    if turns:
        from ivr.nlu.embedder import load_embedder

        embedder = load_embedder()
        groups = review_groups(turns, embedder.encode, args.threshold, model=getattr(embedder, "id", None))
    if args.json:
        print(json.dumps({"total": len(turns), "groups": groups[:args.groups]}, default=str, indent=2))
    else:
        print("\n".join(format_groups(groups, total=len(turns), shown=args.groups)))
    return 0


USAGE = {
    "accept": "accept INTENT TURN [TURN ...]: an intent (or out_of_scope) and turns as `ivr review` names them (CALL:SEQ)",
    "undo": "undo CHANGE: the id an accepted change was given (`ivr review history`)",
    "dismiss": "dismiss TURN [TURN ...]: turns with nothing to learn from",
    "propose": "propose NAME TURN [TURN ...]: a new intent for the designer to add to the flow",
    "restore": "restore TURN [TURN ...]: dismissed or proposed turns back into the queue",
}
SETTLE = {"dismiss": "dismissed", "propose": "proposed", "restore": "restored"}


def _decide(args, settings, store) -> int:
    import getpass
    import sys
    from pathlib import Path

    from ivr.review.changes import ChangeError, accept, applied_changes, settle, undo

    by = args.by or getpass.getuser()
    flows_dir = Path(args.flows or settings.flows_dir)
    rest = args.rest
    if args.action == "history":
        for c in applied_changes(flows_dir):
            print(f"{c['change'] or '(no id)'}  {c['at']}  {c['by']}  {c['file']}: {len(c['examples'])} example(s) of "
                  f"{', '.join(c['intents'])}")
        for a in store.review_actions(flow=args.flow, limit=args.limit):
            print(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(a['ts']))}  {a.get('action')}  {a.get('by')}  "
                  f"{a['call_id']}:{a.get('turn')}  {a.get('intent') or ''}  {a.get('text')!r}")
        return 0
    need = {"accept": 2, "undo": 1, "dismiss": 1, "propose": 2, "restore": 1}[args.action]
    if len(rest) < need or (args.action == "undo" and len(rest) != 1):
        print(f"ivr review {USAGE[args.action]}", file=sys.stderr)
        return 2
    try:
        if args.action in SETTLE:
            intent = rest[0] if args.action == "propose" else None
            turns = settle(store, rest[1:] if intent else rest, SETTLE[args.action], by=by, intent=intent)
            store.flush()
            print(f"{len(turns)} turn(s) {SETTLE[args.action]}" + (f" as a new intent {intent}" if intent else ""))
            return 0
        from ivr.nlu.intents import load_intent_classifier
        from ivr.nlu.service import NLUService

        classifier = load_intent_classifier(use_slm=not args.no_slm)
        nlu = NLUService(classifier, timeout=None)
        if args.action == "undo":
            outcome = undo(store, flows_dir, rest[0], by=by, classifier=classifier, nlu=nlu, dry_run=args.dry_run)
        else:
            from ivr.serving.flows import FlowRepository

            repo = FlowRepository(flows_dir)
            repo.reload()
            outcome = accept(store, repo.get, flows_dir, rest[0], rest[1:], by=by, classifier=classifier, nlu=nlu,
                             dry_run=args.dry_run)
        store.flush()
    except ChangeError as exc:
        print(f"ivr review {args.action}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(outcome.lines))
    return 1 if outcome.action == "refused" else 0


def add_parser(sub) -> None:
    p = sub.add_parser("review", help="turns worth a human look, grouped (list); accept INTENT TURN...: make them "
                                      "examples, proven on the flow's tests first; undo CHANGE; dismiss, propose NAME, "
                                      "restore TURN...; history")
    p.add_argument("action", nargs="?", choices=["list", "accept", "undo", "dismiss", "propose", "restore", "history"],
                   default="list")
    p.add_argument("rest", nargs="*", help="accept: INTENT (or out_of_scope) then turns as CALL:SEQ; undo: CHANGE; "
                                           "dismiss/restore: turns; propose: NAME then turns")
    p.add_argument("--by", help="who decides (default: your user name)")
    p.add_argument("--dry-run", action="store_true", help="accept/undo: prove the change, write nothing")
    p.add_argument("--no-slm", action="store_true", help="accept/undo: route with the example router alone")
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
