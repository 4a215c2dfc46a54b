"""Similar caller turns grouped together, so a reviewer labels a group with one action instead
of each turn (issue #23's review queue). Pure: given the embedder's unit vectors.

Leader clustering: identical words are one item first; items are then taken most frequent
first, and each joins the group whose first member (its leader) it is most similar to, if that
similarity reaches `threshold`, or leads a group of its own. Measured on 1000 Banking77
requests (labels known): against a group's centroid, the biggest groups drifted across intents
(at 0.75, 31 of the 53 turns in the groups a reviewer would label first shared one intent);
against the leader they stay put (at 0.8, 50 of 55 in 7 groups; purity 0.97 over all). One
pass, in blocks of items against the leaders so far: 10,000 turns group in about 0.1 s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = 0.8
BLOCK = 256


def normalised(text: str) -> str:
    return " ".join(text.lower().replace(",", " ").replace(".", " ").replace("?", " ").split())


def group_similar(texts: Sequence[str], vectors: np.ndarray, threshold: float = THRESHOLD) -> list[list[int]]:
    """Indexes into `texts`, grouped, biggest group first (ties: the earliest text first).
    `vectors[i]` is the unit embedding of `texts[i]`."""
    if len(texts) == 0:
        return []
    members: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        members.setdefault(normalised(text), []).append(i)
    order = sorted(members, key=lambda k: (-len(members[k]), members[k][0]))
    firsts = np.ascontiguousarray(vectors[[members[k][0] for k in order]], dtype=np.float32)
    leaders = np.zeros((len(order), vectors.shape[1]), dtype=np.float32)
    groups: list[list[int]] = []
    for start in range(0, len(order), BLOCK):
        block = firsts[start:start + BLOCK]
        known = len(groups)
        # One matrix product against the leaders before the block; within the block, each item
        # is compared only with the leaders the block itself has made so far: the same choices
        # as one item at a time, in a fraction of the time (10,000 turns: 0.35 s -> 0.1 s).
        before = block @ leaders[:known].T if known else None
        for j, key in enumerate(order[start:start + BLOCK]):
            v = block[j]
            best, sim = -1, -np.inf
            if before is not None:
                best = int(np.argmax(before[j]))
                sim = before[j, best]
            if len(groups) > known:
                fresh = leaders[known:len(groups)] @ v
                k = int(np.argmax(fresh))
                if fresh[k] > sim:  # ties go to the older leader, as argmax over all would
                    best, sim = known + k, fresh[k]
            if best < 0 or sim < threshold:
                leaders[len(groups)] = v
                groups.append([])
                best = len(groups) - 1
            groups[best].extend(members[key])
    return sorted(groups, key=lambda m: (-len(m), min(m)))
