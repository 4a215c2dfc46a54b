"""The review queue as groups of similar turns, biggest first: what a reviewer labels with one
action. The turns come from the call log (ivr/calllog/review_queue.py) with the vectors the
router made of them when they were said; a turn without one (said before vectors were kept, or
under another embedder) is embedded here. Grouping is ivr/nlu/grouping.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ivr.calllog.review_queue import unpack_vector
from ivr.dialog.reviewed import SUFFIXES, ReviewedError, parse_reviewed
from ivr.nlu.grouping import THRESHOLD, group_similar


def turn_vectors(turns: Sequence[dict], encode: Callable, model: str | None) -> np.ndarray:
    """One unit vector per turn: the one kept in the call log when `model` made it, else
    `encode(texts)` for the rest (in one batch)."""
    kept = [unpack_vector(t.get("vec")) if model and t.get("vec_by") == model else None for t in turns]
    dim = next((len(v) for v in kept if v is not None), 0)
    missing = [i for i, v in enumerate(kept) if v is None or len(v) != dim]
    fresh = np.asarray(encode([turns[i]["text"] for i in missing]), dtype=np.float32) if missing else None
    if fresh is not None:
        dim = fresh.shape[1] if not dim else dim
        if fresh.shape[1] != dim:  # the kept ones are of another size: embed everything afresh
            return _unit(np.asarray(encode([t["text"] for t in turns]), dtype=np.float32))
    vectors = np.zeros((len(turns), dim), dtype=np.float32)
    for i, v in enumerate(kept):
        if v is not None and len(v) == dim:
            vectors[i] = v
    if fresh is not None:
        vectors[missing] = fresh
    return _unit(vectors)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def grouped(turns: Sequence[dict], encode: Callable, threshold: float = THRESHOLD,
            model: str | None = None) -> list[list[int]]:
    """The queue's turns as groups of indexes, biggest first (ivr/nlu/grouping.py)."""
    if not turns:
        return []
    return group_similar([t["text"] for t in turns], turn_vectors(turns, encode, model), threshold)


def describe(rows: Sequence[dict]) -> dict:
    """A group as the page and the CLI show it: its size, its leader's words, why its turns are
    queued, what the line did with them, where they were said."""
    rows = [{k: v for k, v in row.items() if k not in ("vec", "vec_by")} for row in rows]
    return {
        "size": len(rows),
        "text": rows[0]["text"],  # the group's leader: what it is about
        "reasons": Counter(r for row in rows for r in row["reasons"]).most_common(),
        "did": Counter(row["intent"] or "no match" for row in rows).most_common(),
        "nodes": Counter(f"{row['flow']}:{row['node']}" for row in rows).most_common(),
        "versions": sorted({row["flow_version"] for row in rows if row["flow_version"]}),
        "turns": rows,
    }


def review_groups(turns: Sequence[dict], encode: Callable, threshold: float = THRESHOLD,
                  model: str | None = None) -> list[dict]:
    """The queue's turns as described groups, biggest first. `encode(texts)` gives unit vectors
    for the turns whose kept vector is not `model`'s."""
    return [describe([turns[i] for i in members]) for members in grouped(turns, encode, threshold, model)]


def accepted_turns(flows_dir) -> set[tuple[str, str]]:
    """(call, words) of every turn already accepted into a flow's reviewed examples: reviewed,
    so no longer worth a look."""
    done: set[tuple[str, str]] = set()
    for path in sorted(Path(flows_dir).rglob("*")):
        if path.name.endswith(SUFFIXES):
            try:
                done |= {(ex.call or "", ex.text) for ex in parse_reviewed(path.read_text())}
            except (OSError, ReviewedError):
                continue  # the loader reports a broken file; the queue still shows its turns
    return done


def not_yet_reviewed(turns: Sequence[dict], done: set[tuple[str, str]],
                     settled: set[tuple[str, int]] = frozenset()) -> list[dict]:
    """The turns still to review: not accepted into a flow (`done`, by call and words) nor
    dismissed or proposed as a new intent (`settled`, by call and event number)."""
    return [t for t in turns if (t["call_id"], t["text"]) not in done and (t["call_id"], t["seq"]) not in settled]
