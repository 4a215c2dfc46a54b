"""The review queue as groups of similar turns, biggest first: what a reviewer labels with one
action. The turns come from the call log (ivr/calllog/review_queue.py) with the vectors the
router made of them when they were said; a turn without one (said before vectors were kept, or
under another embedder) is embedded here. Grouping is ivr/nlu/grouping.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
import numpy as np

from ivr.calllog.review_queue import unpack_vector
from ivr.dialog.reviewed import reviewed_files
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


class RememberingEncoder:
    """`encode` for the turns the call log kept no vector for (said before vectors were kept, or
    under another embedder), remembering what it made (float16, `size` texts at most), so each
    load of the review page does not embed them all again."""

    def __init__(self, encode: Callable, size: int = 20_000):
        from collections import OrderedDict

        self._encode, self._size = encode, size
        self._known: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        if missing:
            for text, v in zip(missing, np.asarray(self._encode(missing), dtype=np.float32), strict=True):
                self._known[text] = v.astype(np.float16)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        out = []
        for t in texts:
            v = self._known.get(t)
            if v is None:  # pushed out by this very call (more new texts than `size`)
                v = np.asarray(self._encode([t]), dtype=np.float32)[0]
            out.append(np.asarray(v, dtype=np.float32))
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def grouped(turns: Sequence[dict], encode: Callable, threshold: float = THRESHOLD,
            model: str | None = None) -> list[list[int]]:
    """The queue's turns as groups of indexes, biggest first (ivr/nlu/grouping.py), each of one
    flow: a decision gives its turns an intent of that flow."""
    if not turns:
        return []
    vectors = turn_vectors(turns, encode, model)
    by_flow: dict = {}
    for i, t in enumerate(turns):
        by_flow.setdefault(t.get("flow"), []).append(i)
    out = []
    for idx in by_flow.values():
        out += [[idx[j] for j in members]
                for members in group_similar([turns[i]["text"] for i in idx], vectors[idx], threshold)]
    return sorted(out, key=lambda m: (-len(m), min(m)))


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
    return {(ex.call or "", ex.text) for _, examples in reviewed_files(flows_dir) for ex in examples}


def reviewed(done: set[tuple[str, str]], settled: set[tuple[str, int]] = frozenset()):
    """`turn -> bool`: accepted into a flow (`done`, by call and words), or dismissed or proposed
    as a new intent (`settled`, by call and event number)."""
    return lambda t: (t["call_id"], t["text"]) in done or (t["call_id"], t["seq"]) in settled



