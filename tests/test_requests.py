"""The request schemas (ipc.requests): validation, round trips, and the CLI and MCP tools
checked against them so that neither can drift from what the daemon accepts."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc.cli import build_parser
from ipc.commands import COMMANDS
from ipc.errors import BadRequest
from ipc.paths import runtime_paths
from ipc.protocol import KINDS, MODES
from ipc.requests import (
    MAX_LINE,
    REQUESTS,
    DefRequest,
    ExportRequest,
    IndexRequest,
    MethodRequest,
    NavRequest,
    ReadRequest,
    ReindexRequest,
    RemoveRequest,
    SearchRequest,
    SimilarRequest,
    StatusRequest,
    VerifyRequest,
    WaitRequest,
    base_type,
    field_types,
    unclosed_class,
)

JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def test_every_method_has_a_schema() -> None:
    assert set(REQUESTS) == {
        "hello",
        "status",
        "search",
        "index",
        "reindex",
        "remove",
        "verify",
        "read",
        "similar",
        "stop",
        "wait",
        "export",
        "def",
        "refs",
        "callers",
        "callees",
        "impls",
    }
    for name, schema in REQUESTS.items():
        assert schema.method == name
        for f in dataclasses.fields(schema):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help text"
    assert [m for m, s in REQUESTS.items() if s.long] == ["wait"]


EXAMPLES: list[MethodRequest] = [
    StatusRequest(verify=True),
    SearchRequest(query="retry", limit=3, mode="bm25", root="/r", path="src/*", kind="fn"),
    SearchRequest(symbol="Vec::push"),
    IndexRequest("/abs/root"),
    ReindexRequest(),
    ReindexRequest("/abs/root", force=True),
    ReadRequest("src/lib.rs", root="/r", start_line=3, end_line=9),
    SimilarRequest("/r/src/lib.rs", start_line=1, end_line=4, limit=7),
    WaitRequest("/abs/root", 2.5),
]


def _required(schema: type[MethodRequest]) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(schema)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


@pytest.mark.parametrize("req", EXAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip_through_json(req: MethodRequest) -> None:
    params = json.loads(json.dumps(req.to_params()))
    assert type(req).from_params(params) == req
    assert None not in params.values()


def test_schemas_without_required_fields_parse_empty_params() -> None:
    for schema in REQUESTS.values():
        if not _required(schema) and schema is not SearchRequest:
            assert schema.from_params({}) == schema()


@settings(max_examples=200, deadline=None)
@given(
    query=st.text(st.characters(blacklist_characters="\0"), max_size=20).filter(str.strip),
    limit=st.integers(1, 1000),
    mode=st.sampled_from(MODES),
    kind=st.none() | st.sampled_from(KINDS),
    # Valid globs only: an unclosed `[` is refused (the bad-params cases below).
    path=st.none()
    | st.text(st.characters(blacklist_characters="\0"), max_size=10).filter(
        lambda p: unclosed_class(p) is None
    ),
    symbol=st.none()
    | st.text(st.characters(blacklist_characters="\0"), max_size=10).filter(str.strip),
)
def test_search_round_trip(
    query: str, limit: int, mode: str, kind: str | None, path: str | None, symbol: str | None
) -> None:
    req = SearchRequest(query=query, limit=limit, mode=mode, kind=kind, path=path, symbol=symbol)
    assert SearchRequest.from_params(req.to_params()) == req


@pytest.mark.parametrize(
    ("schema", "params", "message"),
    [
        (SearchRequest, {"query": 5}, "'query' must be a string"),
        (SearchRequest, {}, "'query' must not be empty"),
        (SearchRequest, {"query": " "}, "'query' must not be empty"),
        (SearchRequest, {"symbol": "  "}, "'symbol' must not be empty"),
        (SearchRequest, {"query": "x", "limit": 0}, "'limit' must be an integer from 1 to 1000"),
        (SearchRequest, {"query": "x", "limit": True}, "'limit' must be an integer"),
        (SearchRequest, {"query": "x", "limit": 1.5}, "'limit' must be an integer"),
        (SearchRequest, {"query": "x", "limit": None}, "'limit' must be an integer"),
        (SearchRequest, {"query": "x", "mode": "psychic"}, "'mode' must be one of hybrid"),
        (SearchRequest, {"query": "x", "kind": "spaceship"}, "'kind' must be one of fn"),
        (SearchRequest, {"query": "x", "root": 3}, "'root' must be a string or null"),
        (SearchRequest, {"query": "x", "path": "["}, "'path' is not a valid glob: the"),
        (SearchRequest, {"query": "x", "path": "src/[ab"}, "'path' is not a valid glob"),
        (IndexRequest, {}, "'path' must be a string"),
        (IndexRequest, {"path": None}, "'path' must be a string"),
        (StatusRequest, {"verify": "yes"}, "'verify' must be true or false"),
        (ReindexRequest, {"force": 1}, "'force' must be true or false"),
        (ReadRequest, {"path": "a", "start_line": 0}, "'start_line' must be an integer from 1"),
        (
            ReadRequest,
            {"path": "a", "start_line": 5, "end_line": 4},
            f"'end_line' must be an integer from 5 to {MAX_LINE}",
        ),
        (SimilarRequest, {"path": "a", "limit": 5000}, "'limit' must be an integer"),
        (WaitRequest, {"path": "/r", "timeout_s": -1}, "'timeout_s' must be a number from 0"),
        (WaitRequest, {"path": "/r", "timeout_s": float("nan")}, "'timeout_s' must be a number"),
        (WaitRequest, {"path": "/r", "timeout_s": "5"}, "'timeout_s' must be a number"),
        (WaitRequest, {"path": "/r", "timeout_s": 10**9}, "'timeout_s' must be a number"),
    ],
)
def test_bad_params_are_bad_requests(
    schema: type[MethodRequest], params: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest, match="^" + message.replace("(", r"\(")):
        schema.from_params(params)


#: Every field naming a file system location, with the other params its method needs.
LOCATIONS: list[tuple[type[MethodRequest], str, dict[str, Any]]] = [
    (SearchRequest, "root", {"query": "x"}),
    (DefRequest, "root", {"name": "x"}),
    (IndexRequest, "path", {}),
    (IndexRequest, "snapshot", {"path": "/abs/root"}),
    (ExportRequest, "path", {"file": "/abs/out.tar.gz"}),
    (ExportRequest, "file", {"path": "/abs/root"}),
    (ReindexRequest, "path", {}),
    (RemoveRequest, "path", {}),
    (VerifyRequest, "root", {}),
    (ReadRequest, "root", {"path": "src/lib.rs"}),
    (SimilarRequest, "root", {"path": "src/lib.rs"}),
    (WaitRequest, "path", {}),
]


@pytest.mark.parametrize(("schema", "name", "others"), LOCATIONS)
@pytest.mark.parametrize("relative", ["", ".", "src", "../x", " /abs"])
def test_locations_must_be_absolute(
    schema: type[MethodRequest], name: str, others: dict[str, Any], relative: str
) -> None:
    """The daemon cannot know the client's working directory: `index ""` registered the
    folder the daemon happened to start in."""
    with pytest.raises(BadRequest, match=re.escape(f"'{name}' must be absolute: {relative!r}")):
        schema.from_params({**others, name: relative})
    assert getattr(schema.from_params({**others, name: "/abs/x"}), name) == "/abs/x"
    assert getattr(schema.from_params({**others, name: "~/x"}), name) == "~/x"


def test_every_location_field_is_checked() -> None:
    """`resolve` (the CLI sends it absolute) implies `absolute`; a new location field
    needs a LOCATIONS row above."""
    checked = {(s, n) for s, n, _ in LOCATIONS}
    for schema in REQUESTS.values():
        for f in dataclasses.fields(schema):
            if f.metadata.get("resolve"):
                assert f.metadata.get("absolute"), (schema.__name__, f.name)
            if f.metadata.get("absolute") and not issubclass(schema, NavRequest):
                assert (schema, f.name) in checked, (schema.__name__, f.name)


def test_a_read_path_is_absolute_or_under_a_root() -> None:
    for schema in (ReadRequest, SimilarRequest):
        with pytest.raises(BadRequest, match=r"^'path' must be absolute unless 'root' is given"):
            schema.from_params({"path": "src/lib.rs"})
        assert schema.from_params({"path": "src/lib.rs", "root": "/r"}).path == "src/lib.rs"
        assert schema.from_params({"path": "/r/src/lib.rs"}).root is None


def test_search_path_stays_a_root_relative_glob() -> None:
    assert SearchRequest.from_params({"query": "x", "path": "src/net/*"}).path == "src/net/*"


@pytest.mark.parametrize(
    ("glob", "at"),
    [("[", 0), ("a[b", 1), ("x[]", 1), ("[!]x", 0), ("a[b]c[", 5)]
    + [(ok, None) for ok in ("src/[ab]*", "[]]", "[[]", "[!a]*", "plain/path", "*.rs")],
)
def test_an_unclosed_character_class_is_found(glob: str, at: int | None) -> None:
    from ipc.requests import unclosed_class

    assert unclosed_class(glob) == at


def test_unknown_params_are_ignored_and_ints_are_numbers() -> None:
    assert IndexRequest.from_params({"path": "/r", "extra": 1}) == IndexRequest("/r")
    assert WaitRequest.from_params({"path": "/r", "timeout_s": 3}).timeout_s == 3.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
all_fields = sorted({f.name for s in REQUESTS.values() for f in dataclasses.fields(s)})


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(REQUESTS)),
    st.dictionaries(st.sampled_from(all_fields), json_values, max_size=5),
)
def test_any_params_parse_or_are_a_bad_request(method: str, params: dict[str, Any]) -> None:
    try:
        req = REQUESTS[method].from_params(params)
    except BadRequest:
        return
    assert type(req).from_params(req.to_params()) == req


# ---- the CLI and the MCP tools against the schemas ----


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_cli_arguments_map_to_schema_fields() -> None:
    """Every argument of a command that sends a protocol method is a field of the method's
    schema (same name, choices, default and type), or one of the CLI's declared own."""
    subs = _subparsers(build_parser())
    with_schema = {name: cmd for name, cmd in COMMANDS.items() if cmd.schema is not None}
    assert set(with_schema) == {
        "index",
        "search",
        "status",
        "reindex",
        "remove",
        "export",
        "def",
        "refs",
        "callers",
        "callees",
        "impls",
    }
    for name, cmd in with_schema.items():
        assert cmd.schema is not None
        fields = {f.name: f for f in dataclasses.fields(cmd.schema)}
        types = field_types(cmd.schema)
        for action in subs[name]._actions:
            if isinstance(action, argparse._HelpAction) or action.dest in cmd.extra_dests:
                continue
            assert action.dest in fields, f"rcmd {name}: {action.dest} is no field of the schema"
            f = fields[action.dest]
            flag = f.metadata["cli"]
            assert flag in (action.option_strings or [action.dest])
            assert action.choices == f.metadata.get("choices")
            kind, _ = base_type(types[f.name])
            if kind is not bool and f.default is not dataclasses.MISSING:
                assert action.default == f.default
                bounds = f.metadata.get("bounds")
                if bounds is None or kind not in (int, float):
                    assert action.type is (kind if kind in (int, float) else None)
                    continue
                # Out-of-range numbers are usage errors, at the schema's own bounds.
                lo, hi = bounds
                read = action.type
                assert callable(read) and read(str(kind(hi))) == hi
                for outside in (lo - 1, hi + 1):
                    with pytest.raises(argparse.ArgumentTypeError, match=f"{lo:.0f} to"):
                        read(str(kind(outside)))


def test_cli_search_flags_are_the_search_fields() -> None:
    search = _subparsers(build_parser())["search"]
    flags = {a.dest for a in search._actions if not isinstance(a, argparse._HelpAction)}
    own = {"json", "all", "color"}  # options of the CLI alone
    assert flags == {f.name for f in dataclasses.fields(SearchRequest)} | own


def test_mcp_tool_parameters_map_to_schema_fields(tmp_path: Path) -> None:
    from ipc.mcp_bridge import TOOL_METHODS, build_server

    server = build_server(runtime_paths({"RCMD_HOME": str(tmp_path)}))
    tools = {t.name: t.input_schema for t in asyncio.run(server.list_tools())}
    assert set(tools) == set(TOOL_METHODS)
    for tool, spec in tools.items():
        schema = REQUESTS[TOOL_METHODS[tool]]
        fields = {f.name for f in dataclasses.fields(schema)}
        types = field_types(schema)
        for name, prop in spec["properties"].items():
            assert name in fields, f"MCP {tool}.{name} is no field of {schema.__name__}"
            kind, _ = base_type(types[name])
            declared = {prop.get("type")} | {t.get("type") for t in prop.get("anyOf", [])}
            assert JSON_TYPES[kind] in declared, (tool, name, declared)
        assert set(_required(schema)) <= set(spec.get("required", [])), tool
