from __future__ import annotations

import json

import pytest

from ipc.errors import BadRequest, NotFound, RcmdError, error_for_code
from ipc.protocol import (
    Request,
    decode_reply,
    decode_request,
    encode_error,
    encode_result,
    param_bool,
    param_int,
    param_str,
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


def test_param_checks() -> None:
    assert param_int({"limit": 5}, "limit", 10, 1, 100) == 5
    assert param_int({}, "limit", 10, 1, 100) == 10
    for bad in (0, 101, "5", True, 1.5, 10**30):
        with pytest.raises(BadRequest):
            param_int({"limit": bad}, "limit", 10, 1, 100)
    with pytest.raises(BadRequest):
        param_str({}, "query")
    with pytest.raises(BadRequest):
        param_bool({"force": "yes"}, "force")
