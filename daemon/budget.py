"""A token budget on a search reply (`max_tokens`), for agents that pay per token.

Tokens are estimated as characters / 4 of each hit's JSON, the usual rule of thumb for
code and English. Hits are kept in rank order; a hit that does not fit whole keeps as
many snippet lines as fit, and every hit after the budget is spent is cut and counted.
"""

from __future__ import annotations

import json
from typing import Any

#: Characters per token of the estimate.
CHARS_PER_TOKEN = 4


def _tokens(hit: dict[str, Any]) -> int:
    return -(-len(json.dumps(hit, ensure_ascii=False)) // CHARS_PER_TOKEN)


def _trimmed(hit: dict[str, Any], room: int) -> dict[str, Any] | None:
    """`hit` with the most leading snippet lines that fit in `room` tokens, or None when
    not even its empty-snippet form fits."""
    lines = hit["snippet"].splitlines()
    for keep in range(len(lines) - 1, -1, -1):
        smaller = {**hit, "snippet": "\n".join(lines[:keep])}
        if _tokens(smaller) <= room:
            return smaller
    return None


def apply_budget(hits: list[dict[str, Any]], max_tokens: int) -> tuple[list[dict[str, Any]], int]:
    """(the hits that fit in `max_tokens`, how many were cut)."""
    kept: list[dict[str, Any]] = []
    used = 0
    for i, hit in enumerate(hits):
        cost = _tokens(hit)
        if used + cost > max_tokens:
            smaller = _trimmed(hit, max_tokens - used)
            if smaller is None:
                return kept, len(hits) - i
            hit, cost = smaller, _tokens(smaller)
        kept.append(hit)
        used += cost
    return kept, 0
