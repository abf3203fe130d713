from __future__ import annotations

import json

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
