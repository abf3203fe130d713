"""Message shapes and framing of the rcmd protocol (newline-delimited JSON).

The one place that defines what travels on the socket; `PROTOCOL.md` documents it for
editor authors. Kept free of heavy imports so clients load it in milliseconds.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ipc.errors import BadRequest, RcmdError
from ipc.kinds import KINDS as KINDS  # re-exported: `search` filters on them

PROTOCOL_VERSION = 1
#: A request line longer than this is refused without being read whole.
MAX_LINE_BYTES = 1 << 20

#: Search modes. The schemas (`ipc.requests`) take MODES and KINDS (the chunk-kind table
#: in `ipc.kinds`) from here.
MODES = ("hybrid", "bm25", "vector")


@dataclass(frozen=True, slots=True)
class Request:
    id: Any
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _dump({"id": self.id, "method": self.method, "params": self.params})


def _dump(obj: dict[str, Any]) -> bytes:
    """One message line. Never fails on text: a lone surrogate (a non-UTF-8 file name
    decoded with surrogateescape, say) goes out as its JSON escape (`\\udc80`), as
    `ensure_ascii` would write it, instead of raising UnicodeEncodeError mid-reply."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "backslashreplace") + b"\n"


def encode_result(req_id: Any, result: Any) -> bytes:
    return _dump({"id": req_id, "result": result})


def encode_error(req_id: Any, error: RcmdError) -> bytes:
    return _dump({"id": req_id, "error": {"code": error.code, "message": str(error)}})


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON has no infinity to echo back
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(line: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow to them are refused, so no
    reply can echo a value that is not valid JSON."""
    return json.loads(line, parse_float=_finite, parse_constant=_no_constant)


#: A UTF-16 surrogate code point: JSON's `\\ud800` escapes spell them, UTF-8 cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Longest key shown when naming where a bad string is.
_SHOWN_KEY_CHARS = 40


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """(where, text) of every string in decoded JSON, keys included, breadth first (no
    recursion: nesting is only bounded by the parser's own limit)."""
    todo: deque[tuple[Any, str]] = deque([(value, "")])
    while todo:
        item, at = todo.popleft()
        if isinstance(item, str):
            yield f"'{at}'" if at else "the string", item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield f"a key of '{at}'" if at else "a key", key
                shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "..."
                todo.append((child, f"{at}.{shown}" if at else shown))
        elif isinstance(item, list):
            todo.extend((child, f"{at}[{i}]") for i, child in enumerate(item))


def unicode_problem(value: Any) -> str | None:
    """Why `value` (decoded JSON) is not valid Unicode text, naming the first string that
    holds a lone surrogate, else None. `"\\ud800"` is valid JSON syntax, but no UTF-8
    can carry it: echoed in a reply, or used as a path, it raised UnicodeEncodeError."""
    for where, text in _strings(value):
        if (bad := _SURROGATE.search(text)) is not None:
            return (
                f"{where} is not valid Unicode: it holds the lone surrogate "
                f"U+{ord(bad.group()):04X} (half of a UTF-16 pair), which UTF-8 cannot carry"
            )
    return None


def decode_request(line: bytes) -> Request:
    """Parse one request line; raises BadRequest with a message a client author can act on.
    Every string in it is checked here, once for every method: a lone surrogate is a
    bad request, never an id that cannot be echoed or a path that cannot be encoded."""
    try:
        obj = _loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if (problem := unicode_problem(obj)) is not None:
        raise BadRequest(problem)
    if not isinstance(obj, dict):
        raise BadRequest("a request must be a JSON object")
    method = obj.get("method")
    if not isinstance(method, str):
        raise BadRequest("'method' must be a string")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object")
    return Request(id=obj.get("id"), method=method, params=params)


def request_id_of(line: bytes) -> Any:
    """Best-effort id of a malformed request, so its error reply can still be matched."""
    try:
        obj = _loads(line)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict):
        rid = obj.get("id")
        if rid is None or isinstance(rid, (int, float)):
            return rid
        if isinstance(rid, str) and _SURROGATE.search(rid) is None:
            return rid  # an id that is not valid Unicode cannot be echoed: null instead
    return None


@dataclass(frozen=True, slots=True)
class Reply:
    id: Any
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None


def decode_reply(line: bytes) -> Reply:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("reply is not an object")
    err = obj.get("error")
    if isinstance(err, dict):
        return Reply(obj.get("id"), None, str(err.get("code")), str(err.get("message")))
    return Reply(obj.get("id"), obj.get("result"))
