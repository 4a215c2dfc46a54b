"""Which server process owns a call, and whether this machine can tell that it has died.

Every call row records its owner: host name, boot id, pid namespace, pid, the process's start
time and the store instance id. A process can judge another owner by pid only when both run
under the same kernel boot and the same pid namespace; containers on one host share the host
name (host networking) yet not their pids, so the host name alone is not enough.
"""

from __future__ import annotations

import json
import os
import socket
import threading

# Store instances open in this process: a call whose owner is this process but no open
# instance was left unfinished by a store that has been closed.
_LIVE_INSTANCES: set[str] = set()
_LIVE_LOCK = threading.Lock()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def proc_start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def make_owner(instance: str) -> str:
    pid = os.getpid()
    return json.dumps({"host": socket.gethostname(), "pid": pid, "start": proc_start_token(pid),
                       "instance": instance, "boot": _read("/proc/sys/kernel/random/boot_id"),
                       "pidns": _pid_namespace()})


def register(instance: str) -> None:
    with _LIVE_LOCK:
        _LIVE_INSTANCES.add(instance)


def unregister(instance: str) -> None:
    with _LIVE_LOCK:
        _LIVE_INSTANCES.discard(instance)


def parse(owner: str | None) -> dict | None:
    try:
        o = json.loads(owner) if owner else None
    except ValueError:
        return None
    return o if isinstance(o, dict) else None


def is_local(o: dict) -> bool:
    """Whether the owner ran where this process can check its pid."""
    if o.get("host") != socket.gethostname():
        return False
    # Rows written before boot/pidns were recorded: same host name is all there is to go on.
    for key, mine in (("boot", _read("/proc/sys/kernel/random/boot_id")), ("pidns", _pid_namespace())):
        if key in o and o[key] != mine:
            return False
    return True


def local_alive(o: dict) -> bool:
    """Whether a local owner (``is_local``) may still be running."""
    pid = o.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid() and o.get("start") == proc_start_token(pid):
        with _LIVE_LOCK:
            return o.get("instance") in _LIVE_INSTANCES
    if os.path.isdir("/proc"):
        token = proc_start_token(pid)
        return token is not None and token == o.get("start")
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def owner_alive(owner: str | None) -> bool:
    """SQLite's rule: the database is local, so an owner on another host is an earlier
    container or machine and has stopped."""
    o = parse(owner)
    return o is not None and is_local(o) and local_alive(o)
