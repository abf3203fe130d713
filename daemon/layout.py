"""How the default model is laid out on the CPUs: `runs` texts embedded side by side, each
run on `threads` onnxruntime intra-op threads.

Which layout is fastest depends on the machine, by more than any other setting: one run
per CPU wins where each CPU is a core of its own (runs need no synchronisation), while on
SMT siblings or under a CPU quota the runs compete and one multi-threaded run can win. A
sample figure from one machine (50.8 chunks/s) was 3.5x what the same code gave on another
of the same name (14.6). So the embedder measures the candidate layouts once per machine,
on fixed code-like texts (about a second each), and keeps the fastest, by the CPUs' and
model's signature, in the cache dir (`embed-layout.json`); `[embedding] threads = N`
skips the measurement (N runs of one thread).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from daemon.cpus import CpuInfo

log = structlog.get_logger("rcmd.layout")

M = TypeVar("M")

#: The file, in the cache dir, of the layouts measured on this machine.
LAYOUT_FILE = "embed-layout.json"
#: Bumped when the measurement changes, so that older choices are measured again.
LAYOUT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Layout:
    runs: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.runs}x{self.threads}"


def candidates(cpu: CpuInfo) -> list[Layout]:
    """Layouts worth measuring on `cpu`: a single-threaded run per CPU, one run on every
    CPU, and, where SMT siblings share cores, a run per core."""
    out = [Layout(cpu.usable, 1), Layout(1, cpu.usable)]
    if cpu.cores < cpu.usable:
        out += [Layout(cpu.cores, 1), Layout(cpu.cores, cpu.usable // cpu.cores)]
    return list(dict.fromkeys(out))


_SNIPPET = """\
/// Reads frames from the stream until the buffer holds a complete message, then decodes
/// the header and returns the payload; a short read is retried with backoff.
pub fn read_message<R: Read>(reader: &mut R, buf: &mut Vec<u8>) -> Result<Message, Error> {
    let mut attempts = 0;
    loop {
        match reader.read(&mut buf[..]) {
            Ok(0) if attempts < MAX_RETRIES => { attempts += 1; sleep(backoff(attempts)); }
            Ok(n) => { let h = Header::parse(&buf[..n])?; return Message::decode(h, buf); }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        }
    }
}
impl<K: Hash + Eq, V> Cache<K, V> {
    /// Inserts `value` under `key`, evicting the least recently used entry when full.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if self.map.len() >= self.capacity { self.evict_lru(); }
        self.map.insert(key, Entry { value, stamp: self.clock.tick() }).map(|e| e.value)
    }
}
"""


def calibration_texts() -> list[str]:
    """24 texts of 40 to 900 characters cut from one snippet of Rust: the spread of chunk
    lengths the daemon embeds, the same on every machine."""
    n = len(_SNIPPET)
    return [_SNIPPET[(i * 97) % n :][: 40 + (i * 37) % 860] for i in range(24)]


def measure(
    embed: Callable[[Sequence[str]], object],
    count_tokens: Callable[[Sequence[str]], int],
    texts: Sequence[str] | None = None,
) -> float:
    """Tokens per second of `embed` on `texts` (the calibration texts by default): best
    of two passes after a warm-up (the first call of a session allocates its arena)."""
    texts = calibration_texts() if texts is None else texts
    tokens = count_tokens(texts)
    embed(texts[:4])
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        embed(texts)
        best = min(best, time.perf_counter() - t)
    return tokens / max(best, 1e-9)


#: Another layout replaces the first candidate (a run per CPU) only when this much
#: faster: within it, a busy machine's noise could pick a layout that is slower.
MARGIN = 1.15


def pick(rates: Mapping[Layout, float]) -> Layout:
    """The first layout measured, unless another beats it by MARGIN (the fastest such)."""
    default = next(iter(rates))
    best = max(rates, key=lambda layout: rates[layout])
    return best if rates[best] >= MARGIN * rates[default] else default


class LayoutStore:
    """Measured choices by signature, in one JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != LAYOUT_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, signature: str) -> tuple[Layout, dict[str, float]] | None:
        entry = self._entries().get(signature)
        try:
            layout = Layout(int(entry["runs"]), int(entry["threads"]))  # type: ignore[index]
            rates = {str(k): float(v) for k, v in entry["tokens_per_s"].items()}  # type: ignore[index]
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        if layout.runs < 1 or layout.threads < 1:
            return None
        return layout, rates

    def put(self, signature: str, layout: Layout, rates: Mapping[Layout, float]) -> None:
        entries = self._entries()
        entries[signature] = {
            "runs": layout.runs,
            "threads": layout.threads,
            "tokens_per_s": {k.name: round(v) for k, v in rates.items()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"version": LAYOUT_VERSION, "entries": entries}, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only cache: measured again at the next start
            log.warning("layout_not_saved", path=str(self.path), error=str(exc))
            tmp.unlink(missing_ok=True)


def calibrated(
    cpu: CpuInfo,
    store: LayoutStore,
    model_id: str,
    build: Callable[[Layout], M],
    rate: Callable[[M], float],
    close: Callable[[M], None],
) -> tuple[M, Layout, dict[str, Any]]:
    """The model built with the layout for `cpu`: the one stored for this machine and
    model, else each candidate measured in turn (at most three models alive: the first,
    the fastest so far, the one measured) and the choice (`pick`) stored. Also what
    `status` says about the choice."""
    signature = f"{model_id}|{cpu.signature}"
    known = store.get(signature)
    if known is not None:
        layout, names = known
        return build(layout), layout, {"chosen_by": "measured earlier", "tokens_per_s": names}
    rates: dict[Layout, float] = {}
    models: dict[Layout, M] = {}
    for layout in candidates(cpu):
        models[layout] = build(layout)
        rates[layout] = rate(models[layout])
        keep = {next(iter(rates)), max(rates, key=lambda lay: rates[lay])}
        for lay in [lay for lay in models if lay not in keep]:  # at most 3 models alive
            close(models.pop(lay))
    chosen = pick(rates)
    for lay in [lay for lay in models if lay != chosen]:
        close(models.pop(lay))
    store.put(signature, chosen, rates)
    shown = {k.name: round(v) for k, v in rates.items()}
    log.info("embed_layout_measured", chosen=chosen.name, tokens_per_s=shown, cpu=cpu.to_json())
    return models[chosen], chosen, {"chosen_by": "measured", "tokens_per_s": shown}
