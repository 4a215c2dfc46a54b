"""A registry entry made from another by requantizing (`from` + `requantize`): written once
into the cache, loads and evaluates, is not rewritten on the next start, and bad entries say
what is wrong. Requantizes the embedded Qwen GGUF (as a `path` entry, ~10 s) into a
temporary cache, so the machine's own cache is not touched."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ivr.registry import Registry, RegistryError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed")

REGISTRY = """
[roles]
slm = "small-q8"

[models."small"]
kind = "gguf"
version = "Qwen Q4_K_M"
source = "path"
path = "{path}"
chat_format = "chatml"

[models."small-q8"]
from = "small"
requantize = "Q8_0"

[models."bad-type"]
from = "small"
requantize = "Q3_K"

[models."no-type"]
from = "small"

[models."orphan"]
from = "nowhere"
requantize = "Q8_0"
"""


@pytest.fixture(scope="module")
def source_gguf() -> Path:
    from ivr.registry import model_registry

    return model_registry().resolve("qwen2.5-coder-0.5b-instruct-q4km").path  # assembled by make install


@pytest.fixture
def registry(tmp_path: Path, monkeypatch, source_gguf: Path) -> Registry:
    monkeypatch.setenv("IVR_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY.format(path=source_gguf))
    return Registry(path, "models")


def test_requantized_entry_is_written_once_and_runs(registry: Registry, tmp_path: Path, source_gguf: Path):
    import llama_cpp

    info = registry.for_role("slm")
    assert info.path.parent == tmp_path / "cache" / "models"
    assert info.path.name == f"{source_gguf.stem}.q8_0.gguf"
    assert info.version == "Qwen Q4_K_M, requantized to Q8_0"
    assert info.extra["chat_format"] == "chatml"  # the source entry's options carry over
    assert not list(info.path.parent.glob("*.tmp*"))
    llm = llama_cpp.Llama(str(info.path), n_ctx=64, n_threads=1, verbose=False)
    llm.eval(llm.tokenize(b"Hello there"))
    assert llm.n_tokens > 0
    del llm

    written = info.path.stat().st_mtime_ns
    again = Registry(tmp_path / "registry.toml", "models").for_role("slm")
    assert again.path == info.path and again.path.stat().st_mtime_ns == written

    # a changed source (or llama.cpp build) is noticed: the marker no longer matches
    marker = info.path.with_suffix(".gguf.source")
    marker.write_text("some other source")
    rewritten = Registry(tmp_path / "registry.toml", "models").for_role("slm")
    assert rewritten.path.stat().st_mtime_ns != written
    assert marker.read_text() != "some other source"


@pytest.mark.parametrize(
    "name, message",
    [("bad-type", "requantize must be one of Q8_0, Q4_0"), ("no-type", "needs 'requantize'"),
     ("orphan", "made from unknown model 'nowhere'")],
)
def test_bad_requantize_entries_say_what_is_wrong(registry: Registry, name: str, message: str):
    with pytest.raises(RegistryError, match=message):
        registry.resolve(name)
