from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc.errors import BadRequest, NotFound, RcmdError, error_for_code
from ipc.protocol import (
    Request,
    decode_reply,
    decode_request,
    encode_error,
    encode_result,
    request_id_of,
)


def test_request_roundtrip_is_one_line() -> None:
    line = Request(7, "search", {"query": "fn main\nx"}).encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    req = decode_request(line)
    assert (req.id, req.method, req.params) == (7, "search", {"query": "fn main\nx"})


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1,2]", b'{"id":1}', b'{"method":5}', b'{"method":"x","params":[1]}', b"\xff"],
)
def test_malformed_requests_raise_bad_request(line: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_request(line)


def test_deep_nesting_is_a_bad_request_not_a_crash() -> None:
    with pytest.raises(BadRequest):
        decode_request(b"[" * 100_000 + b"]" * 100_000)


def test_missing_params_default_to_empty() -> None:
    assert decode_request(b'{"id":"a","method":"status"}').params == {}
    assert decode_request(b'{"id":"a","method":"status","params":null}').params == {}


def test_error_reply_carries_code_and_id() -> None:
    line = encode_error(3, NotFound("no such root"))
    obj = json.loads(line)
    assert obj == {"id": 3, "error": {"code": "not_found", "message": "no such root"}}
    reply = decode_reply(line)
    exc = error_for_code(reply.error_code or "", reply.error_message or "")
    assert isinstance(exc, NotFound)
    assert type(error_for_code("made_up", "x")) is RcmdError


def test_result_reply() -> None:
    reply = decode_reply(encode_result("q", {"results": []}))
    assert reply.id == "q" and reply.result == {"results": []} and reply.error_code is None


def test_request_id_recovered_from_bad_params() -> None:
    assert request_id_of(b'{"id": 9, "method": 1}') == 9
    assert request_id_of(b"garbage") is None
    assert request_id_of(b'{"id": [1]}') is None


@pytest.mark.parametrize(
    ("line", "where", "rid"),
    [
        (rb'{"id":"\ud800","method":"hello"}', "'id'", None),
        (rb'{"id":4,"method":"search","params":{"root":"/r\udc80"}}', "'params.root'", 4),
        (b'{"id":5,"method":"index","params":{"path":"/r\xed\xa0\x80"}}', "'params.path'", 5),
        (rb'{"id":6,"method":"x","params":{"a":[1,"\udfff"]}}', "'params.a[1]'", 6),
        (rb'{"id":7,"method":"x","params":{"k\ud800":1}}', "a key of 'params'", 7),
        (rb'"\ud800"', "the string", None),
    ],
)
def test_a_lone_surrogate_is_a_bad_request(line: bytes, where: str, rid: object) -> None:
    """JSON's `\\ud800` escape (or the raw bytes of one) is no UTF-8 text: refused before
    any method sees it, naming where it is; an id holding one is not echoed."""
    with pytest.raises(BadRequest, match="^" + re.escape(where) + " is not valid Unicode: "):
        decode_request(line)
    assert request_id_of(line) == rid


def test_a_surrogate_pair_is_one_character() -> None:
    assert decode_request(rb'{"id":"\ud83d\ude00","method":"hello"}').id == "\U0001f600"


def test_replies_never_fail_to_encode() -> None:
    """A string UTF-8 cannot carry (a non-UTF-8 file name decoded with surrogateescape)
    goes out as its JSON escape: the reply is still one valid line, read back the same."""
    for line in (
        encode_result("\udc80", {"path": "src/\udcff.rs"}),
        encode_error("\ud800", NotFound("no root holds /x\udc80")),
    ):
        assert line.isascii() and line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(encode_result(1, {"path": "src/\udcff.rs"}))["result"]["path"] == (
        "src/\udcff.rs"
    )
    assert "ü" in encode_result(1, "ü\udc80").decode()  # the rest stays UTF-8


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_line_decodes_or_is_a_bad_request(line: bytes) -> None:
    try:
        req = decode_request(line)
    except BadRequest:
        return
    assert isinstance(req.method, str) and isinstance(req.params, dict)


def test_client_side_imports_nothing_heavy() -> None:
    """`rcmd status` must start in milliseconds and editors may vendor `ipc`: importing the
    CLI, client and protocol loads none of the daemon's heavy libraries."""
    import subprocess
    import sys

    code = (
        "import sys, ipc.cli, ipc.client, ipc.protocol, ipc.units, ipc.completion,"
        " ipc.requests, ipc.commands, ipc.driver;"
        "heavy = {'tantivy', 'onnxruntime', 'fastembed', 'qdrant_edge', 'qdrant_client',"
        " 'numpy', 'tree_sitter', 'apsw', 'mcp', 'structlog', 'daemon'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_request_read_while_the_daemon_stops_is_told_so() -> None:
    """A command racing `rcmd stop` (10 at once) got "internal error: RuntimeError:
    cannot schedule new futures after shutdown": its line was read after the request
    pools shut down. It is told the daemon is stopping (code stopping)."""
    import asyncio
    import json

    from daemon.server import Server

    server = Server({"status": lambda _params: {"ok": True}})
    asyncio.run(server.close())
    line = json.dumps({"id": 1, "method": "status", "params": {}}).encode() + b"\n"
    reply = json.loads(asyncio.run(server._handle_line(line)))
    assert reply["error"]["code"] == "stopping", reply
    assert "stopping" in reply["error"]["message"]
