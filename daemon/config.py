"""Configuration: where state lives and the tunable knobs, from TOML and RCMD_* variables.

Every key is optional. The file is `config.toml` in the user config dir (or under
RCMD_HOME); any key can be overridden by `RCMD_<SECTION>_<KEY>`, e.g.
`RCMD_INDEX_MAX_FILE_BYTES=2000000` or `RCMD_VECTOR_STORE_URL=http://qdrant:6333`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ipc.errors import ConfigError
from ipc.paths import RuntimePaths, runtime_paths

_T = TypeVar("_T", int, float)


def positive(default: _T) -> _T:
    """A count, size or period that must be above 0 (checked when the config is read):
    0 would mean a batch of nothing, an empty fusion list, or a loop that never sleeps."""
    return field(default=default, metadata={"positive": True})


@dataclass(frozen=True, slots=True)
class IndexConfig:
    #: Files larger than this are skipped and reported in status.
    max_file_bytes: int = positive(1 << 20)
    #: Quiet time after the last file event before a batch starts. An editor's save
    #: (write a temporary file, rename it over) lands within a millisecond or two, so
    #: 20 ms still makes it one batch (watchman settles for 20 ms too). Every save waits
    #: one to two of it (watchfiles checks for events once per period, and yields after
    #: a period with none), and an idle watcher wakes once per period.
    debounce_ms: int = 20
    #: Longest a constant stream of events can delay a batch.
    max_wait_ms: int = 1000
    #: How often index writes are committed (and filled vectors flushed) while a long batch runs.
    commit_interval_s: float = 1.0
    #: Chunks embedded and written per step of a batch (bounds memory and commit latency).
    chunks_per_step: int = positive(128)
    #: A failed batch (a full disk, a server that is down) is queued again after this long.
    retry_after_s: float = positive(30.0)
    #: Rescan period when the watcher fails, and how often a missing root is looked for.
    poll_interval_s: float = positive(30.0)
    #: A batch of at least this many changed files goes lexical-first: Tantivy and the
    #: records for every file, then the embeddings (cache misses) a few texts at a time,
    #: giving way to any file work. 1 (every batch) keeps an edit in one root from
    #: waiting behind another root's embedding; a bigger value embeds small batches in
    #: the same step (complete when they land, but they then hold the queue meanwhile).
    lexical_first_files: int = 1
    #: A batch of at least this many files extracts their symbol graphs in a worker
    #: process, on another CPU, while it chunks and writes (only with 2+ usable CPUs);
    #: 0: always in process.
    graph_worker_files: int = 64
    #: A batch of at least this many files makes its Tantivy documents in a worker
    #: process, on another CPU, while it chunks and writes the rest (only with 2+ usable
    #: CPUs); 0: always in process. Starting the worker costs ~0.15 s and saves ~50 µs a
    #: chunk, so it pays from ~100 files of ~30 chunks.
    lexical_worker_files: int = 200
    #: Most the chunk cache (chunk lists by file content, shared by all roots) may hold;
    #: past it the oldest entries go once the indexer is idle.
    chunk_cache_mb: int = 256
    #: Most the embedding cache (vectors by text, shared by all roots) may hold on disk
    #: (estimated: ~830 bytes a vector); past it the least recently used go when idle.
    #: 0: no size limit.
    embed_cache_mb: int = 2048
    #: Entries of the embedding and chunk caches unused for this many days go when the
    #: indexer is idle. 0: kept whatever their age.
    cache_max_age_days: float = 90.0
    #: Most the trees of recently parsed files may take in memory (estimated): an edit
    #: to one of them is parsed incrementally and re-chunks only the items it touched.
    #: An entry costs ~56 bytes per source byte, so 64 MB holds a 1.1 MB file's.
    parse_cache_mb: int = 64
    #: A dependency root (`index --deps`) unused this long closes its Tantivy index and
    #: vector shard (their threads and descriptors); the next `--deps` search or batch
    #: opens them again (`daemon.parking`: ~10 ms a crate, so a session of `--deps`
    #: searches pays it once).
    dependency_idle_s: float = positive(300.0)


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"device": ("auto", "cpu", "cuda")}

    #: "default" is the offline int8 all-MiniLM-L6-v2; any fastembed model name works online.
    model: str = "default"
    batch_size: int = positive(32)
    #: Padded-token budget per batch: length-sorted batches stop growing past it. Measured
    #: on 2 cores (512 alloc chunks): 2048 ran 1.25x faster than 8192 and peaked at 600 MB
    #: RSS instead of 1.8 GB, because onnxruntime's arena keeps the largest batch's memory.
    max_batch_tokens: int = positive(2048)
    #: Texts embedded side by side, one onnxruntime thread each; 0: the layout (runs x
    #: threads) measured once on this machine and kept in the cache dir (daemon/layout.py).
    threads: int = 0
    #: Run the default model's weight products in int8 (per-channel scales): ~1.4x
    #: faster on CPUs, vectors at cosine ~0.99 to the float graph's. Another model id,
    #: so switching rebuilds each root once. Only for the default model.
    quantize: bool = True
    #: A chunk whose embedded text is shorter than this many characters shares one
    #: vector with its neighbours (daemon/embed_groups.py); 0: every chunk its own.
    group_small_chars: int = 200
    #: Most characters of text one shared vector is made of (the model reads ~256 tokens).
    group_max_chars: int = positive(700)
    #: Whether the parts after an item's first (a long item is cut to fit the model)
    #: get vectors of their own; false: they share the first part's.
    later_parts: bool = False
    #: Where the default model runs: "cuda" (onnxruntime's CUDAExecutionProvider, from
    #: `pip install 'rcmd[gpu]'`; the start fails without it), "cpu", or "auto" (CUDA
    #: when onnxruntime offers it, else the CPU; status says which and why).
    device: str = "auto"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    #: Empty: embed in the daemon. A Ray address ("10.0.0.5:6379"): chunk texts that miss
    #: the embedding cache are embedded by a pool of Ray actors (`pip install 'rcmd[cluster]'`).
    address: str = ""
    #: Actors in the pool; 0: one per GPU when the cluster has GPUs, else one per
    #: `cpus_per_worker` CPUs of the cluster.
    workers: int = 0
    #: CPUs each actor reserves (and the onnxruntime threads it runs).
    cpus_per_worker: int = positive(1)
    #: Texts per batch sent to an actor.
    batch_size: int = positive(32)
    #: Batches in flight per actor: a second one queued hides the round trip, more would
    #: only hold texts in the object store.
    in_flight_per_worker: int = positive(2)
    #: Longest a batch may take before the cluster counts as lost (local fallback).
    batch_timeout_s: float = positive(120.0)
    #: After the cluster was lost (or unreachable), how long until it is tried again.
    reconnect_s: float = 60.0
    #: This machine's address as the cluster sees it; empty: 127.0.0.1 for a local
    #: address, else Ray's own guess.
    node_ip: str = ""


@dataclass(frozen=True, slots=True)
class VectorStoreConfig:
    #: Empty: the embedded Qdrant Edge shard. A URL: a Qdrant server through qdrant-client.
    url: str = ""
    api_key: str = ""
    collection_prefix: str = "rcmd"


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Ranking knobs; the defaults were tuned on the dev half of the doc-comment set of
    `python -m bench.quality` (docs/SEARCH_QUALITY.md has the figures)."""

    #: Keys whose value must be one of these (checked when the config is read).
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "fusion": ("rrf", "adaptive", "combsum", "zscore")
    }

    #: Reciprocal-rank-fusion constant: smaller lets the top ranks of each list count more.
    rrf_k: int = positive(20)
    #: How many candidates each side contributes to fusion.
    candidates: int = positive(50)
    #: RRF weight of the BM25 list for questions in words (the vector list weighs 1).
    natural_lexical_weight: float = 0.5
    #: RRF weight of the BM25 list for identifier-like queries (`Vec::push`, `read_to_string`).
    identifier_lexical_weight: float = 1.0
    #: RRF weight of the vector list for identifier-like queries (questions weigh 1);
    #: 0 answers names from BM25 and the exact-symbol list without embedding the query.
    identifier_vector_weight: float = 0.0
    #: RRF weight of the list of chunks whose symbol is exactly what an identifier query
    #: names; 0 turns exact symbol matching off.
    symbol_weight: float = 1.0
    #: For a question of 2-4 words, the RRF weight of the chunks defining the identifier
    #: its words spell joined (`lock slow`: `lock_slow`, `LockSlow`).
    joined_weight: float = 1.0
    #: For a question in words, each side's best candidate is placed no lower than
    #: this in the hybrid list (0: off; `fusion.keep_leaders`).
    leader_place: int = 3
    #: BM25 boost of the code text (symbol 3, signature 1.5, path 1) for questions in words.
    natural_content_boost: float = 0.3
    #: BM25 boost, for questions in words, of an item's doc comments on top of the code
    #: text that holds them: the prose a question's words meet best.
    natural_doc_boost: float = 3.0
    #: BM25 weight of a code-like identifier's whole form against its parts
    #: (`NonZeroU32` against `non`, `zero`, `u`, `32`).
    whole_identifier_boost: float = 4.0
    #: BM25 weight, for questions in words, of the short forms code uses for their words
    #: ("length" → `len`, "buffer" → `buf`: `daemon.abbrev`); 0 turns it off.
    abbreviation_weight: float = 1.0
    #: Map a question's vector towards code before the vector search
    #: (`daemon.query_adapter`; only for the default model, which it was fitted for).
    query_adapter: bool = True
    #: Leave English function words out of the BM25 side of questions in words.
    natural_stopwords: bool = False
    #: Report a part of a split item with the whole item's lines.
    whole_items: bool = True
    #: For questions in words, a hit that is a fragment (a few lines of an impl header,
    #: a const, a type alias: `search.is_fragment`) counts this much of its score.
    fragment_weight: float = 0.5
    #: For questions in words, a hit in test code (`search.is_test_code`: under tests/ or
    #: benches/, in a `tests` module, a `#[test]` fn) counts this much of its score,
    #: unless the question asks for tests.
    test_weight: float = 0.5
    #: Drop a hit that overlaps a better one in the same file (parts of one item, a method
    #: and its impl).
    dedupe: bool = True
    #: How a question's BM25 and vector lists are fused: "rrf" (by rank), "adaptive"
    #: (by rank, each list's weight leaned towards the one whose best candidate stands
    #: out more for this query), "combsum" (by their scores scaled to [0, 1]) or
    #: "zscore" (by their standard scores, `fusion.zscore_sum`).
    fusion: str = "adaptive"
    #: Longest a `fresh` search waits for the changes made before it to be indexed.
    fresh_timeout_s: float = 30.0
    #: A question in words whose best vector hit is less similar than this (cosine) is
    #: answered with `confidence: low`: the tree may not hold what it asks for. Two
    #: values, one per space the question's vector is in: `low_confidence_cosine` as
    #: embedded (no adapter: `query_adapter = false`, another model), and
    #: `low_confidence_adapted_cosine` after the query adapter. Each is chosen by
    #: `python -m bench.quality.threshold` on the dev split: the highest value (to 0.01)
    #: that flags at most 5% of answerable questions.
    low_confidence_cosine: float = 0.40
    low_confidence_adapted_cosine: float = 0.39


@dataclass(frozen=True, slots=True)
class LogConfig:
    #: The level names structlog's filtering logger knows (`logging`'s, lower case).
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "level": ("debug", "info", "warning", "warn", "error", "critical")
    }

    level: str = "info"
    #: rcmd.log is rotated past this size; three old files are kept.
    max_bytes: int = positive(10 << 20)


@dataclass(frozen=True, slots=True)
class Config:
    paths: RuntimePaths
    index: IndexConfig = field(default_factory=IndexConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    vector_store: VectorStoreConfig = field(default_factory=VectorStoreConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


_SECTIONS: dict[str, type[Any]] = {
    "index": IndexConfig,
    "embedding": EmbeddingConfig,
    "vector_store": VectorStoreConfig,
    "search": SearchConfig,
    "log": LogConfig,
    "cluster": ClusterConfig,
}


#: What an RCMD_* variable may say for a boolean key (case-insensitive).
_ENV_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_EXPECTED = {
    bool: "true or false (a variable: true/false, 1/0, yes/no)",
    int: "a whole number",
    float: "a number",
    str: "a string",
}
_BAD = object()


def _typed(raw: Any, kind: type[Any]) -> Any:
    """`raw` (a TOML value, or a variable's text) as `kind`, or _BAD. Stricter than the
    constructors: `bool("flase")` is True, `int(1.5)` is 1, `int(True)` is 1."""
    if isinstance(raw, str) and kind is not str:
        if kind is bool:
            return _ENV_BOOLS.get(raw.strip().lower(), _BAD)
        try:
            raw = kind(raw.strip())
        except ValueError:
            return _BAD
    if kind is not bool and isinstance(raw, bool):
        return _BAD
    if kind is int and isinstance(raw, float):
        return int(raw) if raw.is_integer() else _BAD
    if kind is float and isinstance(raw, int):
        return float(raw)
    return raw if isinstance(raw, kind) else _BAD


def _coerce(where: str, raw: Any, spec: dataclasses.Field[Any]) -> Any:
    """One key's value, checked against its field: its type, finite, not negative, and
    above 0 where the field is declared `positive`. A bad value would otherwise start a
    daemon that answers nothing (a NaN weight) or fails every reply (inf is not JSON)."""
    kind = type(spec.default)
    value = _typed(raw, kind)
    if value is _BAD:
        raise ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {raw!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {raw!r}")
    if kind in (int, float) and value < 0:
        raise ConfigError(f"{where}: must not be negative, got {raw!r}")
    if spec.metadata.get("positive") and value <= 0:
        raise ConfigError(f"{where}: must be above 0, got {raw!r}")
    return value


def _choice(where: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` as spelled in `allowed` (case-insensitive: `INFO` is `info`)."""
    if value.lower() not in allowed:
        raise ConfigError(f"{where}: must be one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _build(
    section: str, cls: type[Any], values: dict[str, Any], env: dict[str, str], file: Path
) -> Any:
    """One section from the file's `values` and the RCMD_* variables; an error names the
    key and where its value came from (the file or the variable)."""
    kinds = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(kinds)
    if unknown:
        raise ConfigError(f"{file}: [{section}] unknown key(s): {', '.join(sorted(unknown))}")
    merged = {k: (v, f"[{section}] {k} in {file}") for k, v in values.items()}
    for key in kinds:
        var = f"RCMD_{section.upper()}_{key.upper()}"
        env_value = env.get(var)
        if env_value is not None:
            merged[key] = (env_value, f"{var} ([{section}] {key})")
    built = {k: _coerce(where, v, kinds[k]) for k, (v, where) in merged.items()}
    for key, allowed in getattr(cls, "CHOICES", {}).items():
        if key in built:
            built[key] = _choice(merged[key][1], built[key], allowed)
    return cls(**built)


def load_config(env: dict[str, str] | None = None) -> Config:
    """Read the config file (if any) and the environment into a Config."""
    env = dict(os.environ) if env is None else env
    paths = runtime_paths(env)
    data: dict[str, Any] = {}
    if paths.config_file.exists():
        try:
            data = tomllib.loads(paths.config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{paths.config_file}: {exc}") from None
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{paths.config_file}: unknown section(s): {', '.join(sorted(unknown))}")
    parts = {}
    for name, cls in _SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{paths.config_file}: [{name}] must be a table")
        parts[name] = _build(name, cls, section, env, paths.config_file)
    if parts["vector_store"].url == ":memory:" and env.get("RCMD_TEST_MEMORY_VECTORS") != "1":
        raise ConfigError(
            f'[vector_store] url = ":memory:" (in {paths.config_file} or RCMD_VECTOR_STORE_URL) '
            "keeps vectors in memory only and loses them at every restart; use a server URL, "
            "or leave it empty for the embedded store"
        )
    return Config(paths=paths, **parts)


def ensure_dirs(paths: RuntimePaths) -> None:
    """Create state dirs, private (0700: state.db holds all chunk text). The runtime dir
    holds the socket, so it is created 0700; an existing one is left as it is for the
    daemon's safety check to judge."""
    for d in (paths.state_dir, paths.cache_dir, paths.log_dir):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)  # also closes one made by an older rcmd under a looser umask
    if not paths.runtime_dir.exists():
        paths.runtime_dir.mkdir(parents=True, mode=0o700)
        os.chmod(paths.runtime_dir, 0o700)  # mkdir's mode is filtered by the umask


def root_dir(paths: RuntimePaths, root_id: str) -> Path:
    return paths.state_dir / "roots" / root_id
