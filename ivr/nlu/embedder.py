"""Sentence embeddings from an ONNX encoder (all-MiniLM-L6-v2 int8 by default).

The model's output is `last_hidden_state`; a sentence vector is the attention-masked mean of
the token vectors, L2-normalised, so a dot product between two vectors is their cosine.

`OnnxEmbedder.encode` is thread-safe (onnxruntime sessions may be run concurrently) and keeps a
small LRU cache, so the designer's examples and repeated phrases are embedded once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np


class Embedder(Protocol):
    """What the intent classifier needs: unit-length vectors, one row per text."""

    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class OnnxEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from an ONNX BERT-style encoder."""

    def __init__(
        self,
        model_path: str | Path,
        tokenizer_path: str | Path,
        *,
        threads: int = 1,
        max_tokens: int = 128,
        cache_size: int = 4096,
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        # Pad to the longest text of the batch, not to a fixed length (the shipped tokenizer
        # pads every text to 128 tokens, which costs ~10x on a short phone utterance).
        pad_id = self._tokenizer.token_to_id("[PAD]")
        self._tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token="[PAD]")
        out = self._session.get_outputs()[0]
        self.dim = int(out.shape[-1]) if isinstance(out.shape[-1], int) else 0
        self.model_path = Path(model_path)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        if not self.dim:
            self.dim = int(self._run(["warm up"]).shape[1])
        else:
            self._run(["warm up"])
        # Which vectors are comparable: a turn's vector kept in the call log (for grouping the
        # review queue) is used again only by the same model.
        self.id = f"{self.model_path.parent.name}/{self.model_path.name}:{self.dim}"
        self.load_seconds = time.perf_counter() - t0

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        encs = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # (batch, seq, dim)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        texts = [t if t.strip() else "." for t in texts]
        out: list[np.ndarray | None] = [None] * len(texts)
        missing: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is not None:
                    self._cache.move_to_end(t)
                    out[i] = v
                else:
                    missing.append(i)
        # Similar lengths batch together with less padding.
        missing.sort(key=lambda i: len(texts[i]))
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            vecs = self._run([texts[i] for i in chunk])
            with self._lock:
                for i, v in zip(chunk, vecs):
                    out[i] = v
                    self._cache[texts[i]] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out)  # type: ignore[arg-type]


def load_embedder(registry=None, *, threads: int = 1) -> OnnxEmbedder:
    """The registry's `embedder` role as an OnnxEmbedder."""
    if registry is None:
        from ivr.registry import model_registry

        registry = model_registry()
    info = registry.for_role("embedder")
    tok = info.extra.get("tokenizer_path")
    if info.path is None or not tok:
        from ivr.registry import RegistryError

        raise RegistryError(f"embedder '{info.name}' needs a local ONNX file and a tokenizer_path")
    emb = OnnxEmbedder(info.path, tok, threads=threads)
    emb.info = info  # type: ignore[attr-defined]
    return emb
