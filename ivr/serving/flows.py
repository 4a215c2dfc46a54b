"""The flows a server answers with, reloaded from disk when a designer edits them.

A file that fails validation is reported (file:line) and the last good version keeps serving;
a call keeps the `LoadedFlow` it started with, so an edit never changes a call in progress.
New versions are prepared (NLU caches, synthesised prompts) before they replace the old one,
so the first caller on a new version does not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable

from ivr.dialog.loader import FlowLoadError, LoadedFlow, expand_flow_paths, is_draft, load_flow
from ivr.dialog.reviewed import reviewed_path

log = logging.getLogger("ivr.serving.flows")


def static_prompts(loaded: LoadedFlow) -> list[str]:
    """Every prompt with no template in it: these can be synthesised before any call."""
    flow = loaded.flow
    texts: list[str] = []

    def add(prompt) -> None:
        for text in [prompt] if isinstance(prompt, str) else (prompt or []):
            if "{" not in text:
                texts.append(text)

    for policy in (flow.defaults.no_match, flow.defaults.no_input):
        add(policy.say)
    for node in flow.nodes.values():
        add(node.say)
        for policy in (node.no_match, node.no_input):
            if policy is not None:
                add(policy.say)
    return list(dict.fromkeys(texts))


def _stamp(path: Path) -> tuple[float, float | None]:
    """When a flow last changed: its file, and the examples reviewers accepted for it."""
    try:
        extra = reviewed_path(path).stat().st_mtime
    except OSError:
        extra = None
    return path.stat().st_mtime, extra


class FlowRepository:
    def __init__(self, flows_dir: str | Path, *, prepare: Callable[[LoadedFlow], None] | None = None):
        self.flows_dir = Path(flows_dir)
        self._prepare = prepare
        self._by_name: dict[str, LoadedFlow] = {}
        self._by_file: dict[Path, tuple[float, str]] = {}  # path -> (mtime, flow name)
        self.errors: dict[Path, list] = {}
        self._drafts: dict[Path, tuple[float, LoadedFlow]] = {}  # the last prepared version of each draft

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> LoadedFlow | None:
        return self._by_name.get(name)

    def reload(self) -> list[str]:
        """Load new and changed files; returns the names of flows that changed."""
        changed: list[str] = []
        for path in expand_flow_paths([self.flows_dir]):
            try:
                mtime = _stamp(path)
            except OSError:
                continue
            known = self._by_file.get(path)
            if known and known[0] == mtime:
                continue
            try:
                loaded = load_flow(path)
            except FlowLoadError as exc:
                self.errors[path] = exc.errors
                self._by_file[path] = (mtime, known[1] if known else "")
                for err in exc.errors:
                    log.error("flow rejected, keeping the last good version: %s", err)
                continue
            self.errors.pop(path, None)
            previous = self._by_name.get(loaded.name)
            if previous is not None and previous.version == loaded.version:
                self._by_file[path] = (mtime, loaded.name)
                continue
            if previous is not None and Path(previous.path) != path:
                log.error("%s: flow name '%s' is already used by %s; ignored", path, loaded.name, previous.path)
                self._by_file[path] = (mtime, "")
                continue
            if self._prepare is not None:
                self._prepare(loaded)
            self._by_name[loaded.name] = loaded
            self._by_file[path] = (mtime, loaded.name)
            changed.append(loaded.name)
            log.info("flow %s version %s loaded from %s", loaded.name, loaded.version, path)
        return changed

    def draft_files(self) -> list[Path]:
        """Drafts (`*.draft.yaml`) in the flows folder: never served to the phone line."""
        return [p for p in expand_flow_paths([self.flows_dir], drafts=True) if is_draft(p)]

    def draft(self, file: str) -> LoadedFlow:
        """A draft by its path relative to the flows folder, loaded and prepared as it is on disk
        now (a designer calls it right after an edit). Raises LookupError for a file that is not
        a draft there, FlowLoadError (file:line) for one that does not validate."""
        path = next((p for p in self.draft_files() if p.relative_to(self.flows_dir).as_posix() == file), None)
        if path is None:
            raise LookupError(f"no draft {file!r} in {self.flows_dir} (drafts are named *.draft.yaml)")
        mtime = _stamp(path)
        known = self._drafts.get(path)
        if known is not None and known[0] == mtime:
            return known[1]
        loaded = load_flow(path)
        if self._prepare is not None and (known is None or known[1].version != loaded.version):
            self._prepare(loaded)
        self._drafts[path] = (mtime, loaded)
        return loaded

    async def watch(self, interval: float = 1.0) -> None:
        """Poll for edits (cheap: a stat per file) and reload off the event loop."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.reload)
            except Exception as exc:  # never let a bad edit stop the watcher
                log.exception("flow reload failed: %s", exc)
