"""Embedding on a Ray cluster: `[cluster] address` (or RCMD_CLUSTER_ADDRESS).

Chunk texts that miss the embedding cache go to a pool of Ray actors, each holding the
same offline model and graph as the daemon (loaded once per actor), in batches of
`batch_size` with at most `in_flight_per_worker` batches queued per actor: the daemon
never holds more than that many texts out. The vectors come back to the daemon, which
caches and writes them itself, so the one-writer consistency rule is unchanged.

Faults: a batch whose actor died is sent to another actor (Ray restarts the dead one);
a cluster that cannot be reached, or is lost, turns to the local model for the texts
not yet embedded (none is lost or embedded twice into the indexes: vectors are written
only after `embed` returns), says so in status, and is tried again after `reconnect_s`.
Queries are always embedded locally: one short text does not pay for a round trip.

Ray is imported only here, and only when an address is set.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from daemon.config import ClusterConfig, EmbeddingConfig
from daemon.embedder import EMBED_GROUP, Embedder, in_groups
from ipc.errors import ConfigError

log = structlog.get_logger("rcmd.cluster")

#: Restarts Ray grants an actor that died (a killed process, a lost node) before it stays
#: dead; its batches go to the other actors meanwhile.
ACTOR_RESTARTS = 3
#: Longest the actors may take to load the model when the pool is made.
POOL_READY_S = 300.0
#: How long the reachability check before ray.init waits for the address to answer.
PROBE_TIMEOUT_S = 5.0


class ClusterLost(Exception):
    """The cluster (or every actor of the pool) cannot embed now."""


class EmbedWorker:
    """A Ray actor: one model, loaded once, embedding the batches it is sent."""

    def __init__(self, fields: dict[str, Any]) -> None:
        cfg = EmbeddingConfig(**fields)
        cache = Path(tempfile.gettempdir()) / f"rcmd-ray-worker-{os.getuid()}"
        cache.mkdir(mode=0o700, exist_ok=True)
        self.embedder = Embedder(cfg, cache)

    def model_id(self) -> str:
        return self.embedder.model_id

    def pid(self) -> int:
        return os.getpid()

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.stack(self.embedder.embed(texts)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class PoolShape:
    """How many actors, and what each reserves."""

    workers: int
    cpus: int
    gpus: int

    @staticmethod
    def for_cluster(cfg: ClusterConfig, resources: dict[str, float]) -> PoolShape:
        """One actor per GPU when the cluster has GPUs, else one per `cpus_per_worker`
        CPUs; `workers` overrides the count."""
        gpus = int(resources.get("GPU", 0))
        cpus = max(cfg.cpus_per_worker, 1)
        count = gpus if gpus else int(resources.get("CPU", 0)) // cpus
        return PoolShape(cfg.workers or max(count, 1), cpus, 1 if gpus else 0)


class _Pool:
    """The actors and the batching over them; used by the indexer thread only."""

    def __init__(self, cfg: ClusterConfig, actors: list[Any]) -> None:
        self.cfg = cfg
        self.actors = actors
        #: Batches sent again to another actor after theirs died.
        self.retried = 0

    @staticmethod
    def create(cfg: ClusterConfig, embedding: EmbeddingConfig, model_id: str) -> _Pool:
        """Start the actors and wait until each has loaded the model; refuse a pool whose
        model differs from the daemon's (another rcmd version on the nodes)."""
        import ray

        shape = PoolShape.for_cluster(cfg, ray.cluster_resources())
        fields = asdict(
            replace(embedding, threads=shape.cpus, device="cuda" if shape.gpus else "cpu")
        )
        remote = ray.remote(EmbedWorker).options(
            num_cpus=shape.cpus,
            num_gpus=shape.gpus,
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=0,
            scheduling_strategy="SPREAD",
        )
        actors = [remote.remote(fields) for _ in range(shape.workers)]
        ids = ray.get([a.model_id.remote() for a in actors], timeout=POOL_READY_S)
        if any(i != model_id for i in ids):
            raise ClusterLost(
                f"the cluster's workers run model {sorted(set(ids))}, the daemon {model_id}: "
                "install the same rcmd version on every node"
            )
        return _Pool(cfg, actors)

    def run(self, texts: Sequence[str], dim: int) -> npt.NDArray[np.float32]:
        """Vectors for `texts`, in order. Batches go to the least-loaded live actor, at
        most `in_flight_per_worker` per actor; a batch whose actor died is queued again
        for the others."""
        import ray
        from ray.exceptions import RayActorError

        size = max(self.cfg.batch_size, 1)
        batches = [range(s, min(s + size, len(texts))) for s in range(0, len(texts), size)]
        out = np.empty((len(texts), dim), dtype=np.float32)
        todo = deque(range(len(batches)))
        running: dict[Any, tuple[int, int]] = {}
        load = [0] * len(self.actors)
        dead: set[int] = set()
        per_actor = max(self.cfg.in_flight_per_worker, 1)
        while todo or running:
            live = [a for a in range(len(self.actors)) if a not in dead]
            if not live:
                raise ClusterLost("every worker of the pool died")
            while todo and min(load[a] for a in live) < per_actor:
                b, a = todo.popleft(), min(live, key=load.__getitem__)
                ref = self.actors[a].embed.remote([texts[i] for i in batches[b]])
                running[ref], load[a] = (b, a), load[a] + 1
            ready, _ = ray.wait(list(running), num_returns=1, timeout=self.cfg.batch_timeout_s)
            if not ready:
                raise ClusterLost(f"no batch came back within {self.cfg.batch_timeout_s:g}s")
            b, a = running.pop(ready[0])
            load[a] -= 1
            try:
                out[batches[b]] = ray.get(ready[0])
            except RayActorError as exc:
                log.warning(
                    "cluster_batch_retried", worker=a, texts=len(batches[b]), error=str(exc)
                )
                self.retried += 1
                dead.add(a)
                todo.appendleft(b)
        return out


def _init_args(cfg: ClusterConfig) -> dict[str, Any]:
    """ray.init's arguments: quiet (Ray's logs stay in its own folder, not the daemon's),
    and on a local address the driver's address pinned to 127.0.0.1 so no traffic
    leaves the machine."""
    host = cfg.address.removeprefix("ray://").rsplit(":", 1)[0]
    node_ip = cfg.node_ip or ("127.0.0.1" if host in ("127.0.0.1", "localhost") else "")
    args: dict[str, Any] = {
        "address": cfg.address,
        "namespace": "rcmd",
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": False,
    }
    if node_ip:
        args["_node_ip_address"] = node_ip
    return args


def require_ray(address: str) -> None:
    """A clear error at start (without importing Ray) when an address is set but Ray is
    not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            f"[cluster] address is {address!r}, but Ray is not installed; install it "
            "with: pip install 'rcmd[cluster]' (or empty the address to embed locally)"
        )


def _probe(address: str) -> None:
    """Fail fast when nothing listens at `address`: ray.init would retry for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        raise ClusterLost(f"cannot reach the cluster at {address}: {exc}") from None


class ClusterEmbedder:
    """The local `Embedder`'s interface, with cache misses embedded on the cluster.

    The connection is made on a thread of its own, so the daemon starts (and embeds
    locally) while the actors load; `state` is "connected" once they have."""

    def __init__(self, local: Embedder, cfg: ClusterConfig) -> None:
        require_ray(cfg.address)
        self.local = local
        self.cfg = cfg
        self.model_id, self.dim = local.model_id, local.dim
        self.chunks_embedded = 0
        #: Batches retried by pools lost since (the current pool counts its own).
        self._retried_before = 0
        self._pool: _Pool | None = None
        self._reason = "connecting"
        self._lock = threading.Lock()
        self._closed = threading.Event()
        #: Set when the pool is lost (or at close): the keeper thread connects again.
        self._lost_event = threading.Event()
        self._keeper = threading.Thread(
            target=self._keep_connected, name="rcmd-cluster", daemon=True
        )
        self._keeper.start()

    # ---- the connection ----
    def _keep_connected(self) -> None:
        """Connect; after a failure or a loss, wait `reconnect_s` and connect again,
        until `close`."""
        while not self._closed.is_set():
            if self._try_connect():
                self._lost_event.wait()
                self._lost_event.clear()
            if self._closed.wait(self.cfg.reconnect_s):
                return

    def _try_connect(self) -> bool:
        import ray

        try:
            if not ray.is_initialized():
                _probe(self.cfg.address)
                ray.init(**_init_args(self.cfg))
            pool = _Pool.create(self.cfg, self.local.cfg, self.model_id)
        except Exception as exc:  # any failure to reach or use the cluster: embed locally
            self._fall_back(f"{type(exc).__name__}: {exc}")
            return False
        self._pool, self._reason = pool, ""
        log.info("cluster_connected", address=self.cfg.address, workers=len(pool.actors))
        return True

    def _fall_back(self, reason: str) -> None:
        """Embed locally from now on (the keeper thread tries the cluster again)."""
        import ray

        with self._lock:
            if self._pool is not None:
                self._retried_before += self._pool.retried
            self._pool = None
            self._reason = reason
        log.warning("cluster_local_fallback", address=self.cfg.address, reason=reason)
        try:
            ray.shutdown()
        except Exception as exc:
            log.warning("cluster_shutdown_failed", error=str(exc))
        self._lost_event.set()

    # ---- the embedder's interface ----
    def embed(self, texts: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """Vectors for `texts`: from the pool when connected, else (or when the cluster
        fails during the call) from the local model."""
        pool = self._pool if texts else None
        if pool is None:
            return self.local.embed(texts)
        try:
            vectors = pool.run(texts, self.dim)
        except Exception as exc:  # ClusterLost, or Ray's errors for a lost cluster
            self._fall_back(f"{type(exc).__name__}: {exc}")
            return self.local.embed(texts)
        self.chunks_embedded += len(texts)
        return list(vectors)

    def embed_until(
        self, texts: Sequence[str], stop: Callable[[], bool]
    ) -> dict[int, npt.NDArray[np.float32]]:
        """Vectors by index of the texts embedded before `stop()` said newer work
        waits: `parallel_texts` (at least `EMBED_GROUP`) at a time on the cluster, else
        as the local model does."""
        if self._pool is None:
            return self.local.embed_until(texts, stop)
        return in_groups(self.embed, texts, max(EMBED_GROUP, self.parallel_texts), stop)

    @property
    def parallel_texts(self) -> int:
        """Enough texts per call to keep every actor's batches in flight."""
        pool = self._pool
        if pool is None:
            return self.local.parallel_texts
        return len(pool.actors) * self.cfg.batch_size * max(self.cfg.in_flight_per_worker, 1)

    @property
    def loaded(self) -> bool:
        return self.local.loaded

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self.local.embed_query(text)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self.local.token_lengths(texts)

    def release_memory(self, min_texts: int) -> bool:
        return self.local.release_memory(min_texts)

    def join(self) -> None:
        self.local.join()

    def device_status(self) -> dict[str, str | None]:
        return self.local.device_status()

    def layout_status(self) -> dict[str, object]:
        return self.local.layout_status()

    @property
    def tokens_embedded(self) -> int:
        """Tokens this process embedded (local fallback); the cluster's are its own."""
        return self.local.tokens_embedded

    def cluster_status(self) -> dict[str, object]:
        pool = self._pool
        out: dict[str, object] = {
            "address": self.cfg.address,
            "state": "connected" if pool is not None else "local-fallback",
            "workers": len(pool.actors) if pool is not None else 0,
            "chunks_embedded": self.chunks_embedded,
            "retried_batches": self._retried_before + (pool.retried if pool else 0),
        }
        if pool is None:
            out["reason"] = self._reason
        return out

    def close(self) -> None:
        """Disconnect: the actors belong to this driver and end with it."""
        import ray

        self._closed.set()
        self._lost_event.set()
        self._pool = None
        if ray.is_initialized():
            ray.shutdown()
