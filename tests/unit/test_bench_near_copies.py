"""`ivr bench nlu --tidy`: an intent's examples are one wording and its nearest neighbours."""

import random

import numpy as np

from ivr.bench.nlu_quick import _near_copies


class Axis:
    """Each text a point on the unit circle at the angle it names."""

    def encode(self, texts):
        return np.asarray([[np.cos(float(t)), np.sin(float(t))] for t in texts], dtype=np.float32)


def test_the_first_wording_and_the_ones_nearest_it():
    train = [(str(a), "x") for a in (0.0, 3.0, 0.1, 2.9, 0.2, 2.8)]  # two far-apart clusters of three
    idx = list(range(len(train)))
    picks = {frozenset(_near_copies(Axis(), train, idx, 3, random.Random(seed))) for seed in range(20)}
    assert picks == {frozenset({0, 2, 4}), frozenset({1, 3, 5})}  # always one cluster, never a mix
