"""How many threads one small-LM evaluation may use, decided just before it runs.

llama.cpp splits a batch over its threads and makes them wait for each other after every layer by
spinning, not sleeping. On an idle 2-core machine 2 threads evaluate a turn 1.6x faster than 1
(docs/nlu.md); with anything else runnable on the other core (another call's transcription, a
second replica), the spinning thread waits for a preempted partner and a 0.6 s turn took 6-9 s
(measured). So the server keeps 1 thread as its floor and takes more only when the kernel says
nothing else wants a CPU at that moment: the fourth field of /proc/loadavg counts the runnable
threads machine-wide, this one included. The decision is re-taken before each chunk of a turn
(`SlmScorer` evaluates the caller's words in 16-token chunks), so a job that starts mid-turn costs
at most one chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

LOADAVG = "/proc/loadavg"


def threads_for(base: int, most: int, cpus: int, runnable: int | None) -> int:
    """Threads for the next evaluation: `base` unless cores are idle, then up to `most`.

    `runnable` counts the machine's runnable threads including the caller (None: unknown). Each
    idle core beyond the caller's own may take one more thread."""
    base = max(1, base)
    if most <= base or runnable is None:
        return base
    idle = cpus - max(0, runnable - 1)
    return max(base, min(most, idle))


def runnable_threads(path: str = LOADAVG) -> int | None:
    """Runnable threads on the machine now (the caller counts), or None where unreadable."""
    try:
        with open(path, "rb") as fh:
            field4 = fh.read().split()[3]
        return int(field4.split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class ThreadPolicy:
    """`base` threads always; up to `most` when the machine has that many idle cores."""

    base: int = 1
    most: int = 1
    cpus: int = field(default_factory=usable_cpus)
    probe: Callable[[], int | None] = runnable_threads

    def __post_init__(self) -> None:
        self.base = max(1, int(self.base))
        self.most = max(self.base, int(self.most))

    @property
    def adaptive(self) -> bool:
        return self.most > self.base

    def threads(self) -> int:
        if not self.adaptive:
            return self.base
        return threads_for(self.base, self.most, self.cpus, self.probe())


class LlamaThreads:
    """A `ThreadPolicy` applied to one llama.cpp context (hold the context's lock)."""

    def __init__(self, policy: ThreadPolicy):
        self.policy = policy
        self._set = policy.base  # the count the context was created with
        self.last = policy.base  # what the latest evaluation ran on

    def apply(self, llm) -> int:
        n = self.policy.threads()
        if n != self._set:
            import llama_cpp

            llama_cpp.llama_set_n_threads(llm._ctx.ctx, n, n)
            self._set = n
        self.last = n
        return n
