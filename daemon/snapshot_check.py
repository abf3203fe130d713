"""What a snapshot says about files, checked against the files and the local model before
any of it is installed: a snapshot comes from anywhere, so its chunk rows and vectors are
trusted only as far as they can be verified here.

- Every chunk row of a file adopted as matching must hold that file's own lines over its
  range (the chunker's `text` is exactly those lines, BOM dropped and CRLF made LF), so
  no snippet, line number or range can be invented.
- A vector left to make (a pending row) must name the text the local model embeds for
  its chunk: it is embedded later and cached under that text.
- A random sample of the installed vectors is embedded again from the files' texts: a
  vector that the local model would not make (made up, or from another model build) is
  refused. Vectors from a snapshot never enter the shared embedding cache: a sample
  cannot vouch for every one, and a cache entry would outlive the root.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from daemon.chunker import chunk_source, normalize, source_lines
from daemon.embed_groups import EmbedPolicy, embedded_texts
from daemon.state import ChunkRow
from ipc.errors import BadRequest

#: Vectors embedded again per adoption.
SAMPLE = 8
#: Least cosine between a snapshot's vector and the local model's for the same text.
#: Measured on the fixture crate's 55 texts: the int8 model against itself (batched or
#: one by one) 1.00000, through float16 1.000000; the float graph against the int8 one
#: 0.985-0.994, mean 0.991; another chunk's vector 0.70 on average, a forged file's
#: 0.42. 0.98 leaves room for another machine's kernels (a GPU's were not measured)
#: while a vector of other text or of another model is far below it. The sample is a
#: check of honesty, not a defence: the defence is that no snapshot vector reaches
#: the shared cache.
MIN_COSINE = 0.98

Embed = Callable[[Sequence[str]], Sequence[npt.NDArray[np.float32]]]


def check_file_rows(path: str, data: bytes, rows: Iterable[ChunkRow]) -> None:
    """Each row of the file `path` (whose bytes are `data`) lies within its lines and
    holds exactly the text of its range."""
    lines = source_lines(normalize(data))
    for row in rows:
        if row.end_line > len(lines):
            raise BadRequest(
                f"snapshot: chunk {row.id} of {path} ends at line {row.end_line}, past the "
                f"file's {len(lines)}; refusing the snapshot"
            )
        if row.text != "\n".join(lines[row.start_line - 1 : row.end_line]):
            raise BadRequest(
                f"snapshot: chunk {row.id} does not hold lines {row.start_line}-{row.end_line} "
                f"of {path}; refusing the snapshot"
            )


@dataclass(frozen=True, slots=True)
class Sampled:
    """A snapshot vector to check, with the chunk row it belongs to."""

    row: ChunkRow
    vector: npt.NDArray[np.float16]


def pick(candidates: Sequence[Sampled], n: int = SAMPLE) -> list[Sampled]:
    """`n` of `candidates` at random (from the OS's entropy: a snapshot's maker cannot
    know which of its vectors will be looked at)."""
    return random.SystemRandom().sample(list(candidates), min(n, len(candidates)))


def _texts(path: str, data: bytes, policy: EmbedPolicy) -> dict[tuple[int, int, str, str], str]:
    """The text the local model embeds for each chunk of the file, by its place and name."""
    listed = chunk_source(path, data)
    return {
        (c.start_line, c.end_line, c.symbol, c.kind): text
        for c, text in zip(listed, embedded_texts(listed, policy), strict=True)
    }


def _key(row: ChunkRow) -> tuple[int, int, str, str]:
    return (row.start_line, row.end_line, row.symbol, row.kind)


def _not_chunked(row: ChunkRow) -> BadRequest:
    return BadRequest(
        f"snapshot: chunk {row.id} ({row.path}:{row.start_line}) is not one this rcmd's "
        "chunker makes of the file; refusing the snapshot"
    )


def embedded_text(row: ChunkRow, data: bytes, policy: EmbedPolicy) -> str:
    """The text the local model embeds for `row`, from its file's bytes `data`."""
    text = _texts(row.path, data, policy).get(_key(row))
    if text is None:
        raise _not_chunked(row)
    return text


def check_pending(
    data: bytes, pending: Iterable[tuple[ChunkRow, str]], policy: EmbedPolicy
) -> None:
    """Each (chunk row, text to embed) of a vector the snapshot left to make names the
    text the local model would embed for that chunk: the vector made later, and put in
    the shared cache, is then the one of the chunk's own text."""
    texts: dict[tuple[int, int, str, str], str] | None = None
    for row, text in pending:
        texts = texts if texts is not None else _texts(row.path, data, policy)
        mine = texts.get(_key(row))
        if mine is None:
            raise _not_chunked(row)
        if text != mine:
            raise BadRequest(
                f"snapshot: the pending vector of chunk {row.id} ({row.path}:{row.start_line}) "
                "names a text other than the chunk's; refusing the snapshot"
            )


def check_vectors(
    sample: Sequence[Sampled], files: Mapping[str, bytes], policy: EmbedPolicy, embed: Embed
) -> None:
    """Every sampled vector is, within MIN_COSINE, the local model's for its text."""
    if not sample:
        return
    texts = [embedded_text(s.row, files[s.row.path], policy) for s in sample]
    for s, mine in zip(sample, embed(texts), strict=True):
        theirs = s.vector.astype(np.float32)
        norms = float(np.linalg.norm(theirs) * np.linalg.norm(mine))
        cosine = float(np.dot(theirs, mine)) / norms if norms > 0 else 0.0
        if not cosine >= MIN_COSINE:
            raise BadRequest(
                f"snapshot: the vector of chunk {s.row.id} ({s.row.path}:{s.row.start_line}) "
                f"is not this model's (cosine {cosine:.3f} < {MIN_COSINE}); it was made by "
                "another model build or by hand; refusing the snapshot"
            )
