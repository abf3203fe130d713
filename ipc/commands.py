"""How `rcmd` subcommands are declared: a decorator next to each command function.

`@command(name, help, description, schema=XRequest)` registers the function; the
arguments of a protocol method's fields that have a `cli` spec are derived from its schema
(`ipc.requests`), and `@argument(...)` (below `@command`) adds options of the CLI's own,
such as `--json`. `build_parser` in `ipc.cli` turns the registry into argparse parsers,
which `rcmd completion` introspects.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ipc.paths import RuntimePaths
from ipc.requests import MethodRequest, base_type, field_types

CommandFunc = Callable[[argparse.Namespace, RuntimePaths], int]
AddArgument = Callable[[argparse.ArgumentParser], None]
F = TypeVar("F", bound=CommandFunc)
R = TypeVar("R", bound=MethodRequest)


@dataclass
class Command:
    name: str
    help: str
    description: str
    func: CommandFunc
    #: The protocol method whose fields become arguments, if any.
    schema: type[MethodRequest] | None = None
    #: Options of the CLI's own (`--json`), in the order they were declared.
    extra: list[AddArgument] = field(default_factory=list)
    #: Their argparse destinations, which map to no schema field.
    extra_dests: set[str] = field(default_factory=set)

    def add_to(self, sub: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            self.name,
            help=self.help,
            description=self.description,
            formatter_class=HelpFormatter,
        )
        if self.schema is not None:
            add_schema_arguments(p, self.schema)
        for add in self.extra:
            add(p)
        p.set_defaults(func=self.func)
        return p


def terminal_columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` reads it (COLUMNS, then the
    stdout tty, else 80), without importing shutil."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter minus its `import shutil`, which pulls in zlib, bz2 and lzma:
    argparse makes a formatter for every argument it adds, so each `rcmd` call paid
    ~2 ms for the import. Same width as argparse's own (the terminal's less 2)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(
            prog,
            indent_increment,
            max_help_position,
            terminal_columns() - 2 if width is None else width,
        )


#: Command name → its declaration, in the order the functions are defined.
COMMANDS: dict[str, Command] = {}
_PENDING: dict[Callable[..., Any], list[tuple[tuple[str, ...], dict[str, Any]]]] = {}


def command(
    name: str, help: str, description: str, *, schema: type[MethodRequest] | None = None
) -> Callable[[F], F]:
    """Register a `cmd_*` function as the subcommand `name`."""

    def register(func: F) -> F:
        declared = list(reversed(_PENDING.pop(func, [])))  # decorators apply bottom-up
        cmd = Command(name, help, description, func, schema)
        for names, kwargs in declared:
            cmd.extra.append(_adder(names, kwargs))
            cmd.extra_dests.add(_dest(names, kwargs))
        COMMANDS[name] = cmd
        return func

    return register


def _dest(names: tuple[str, ...], kwargs: dict[str, Any]) -> str:
    """The destination argparse gives an argument, worked out without building a parser
    (one throwaway parser per option cost ~0.6 ms of every `rcmd` call's start-up)."""
    if "dest" in kwargs:
        return str(kwargs["dest"])
    if not names[0].startswith("-"):
        return names[0]
    longs = [n for n in names if n.startswith("--")]
    return (longs or list(names))[0].lstrip("-").replace("-", "_")


def _adder(names: tuple[str, ...], kwargs: dict[str, Any]) -> AddArgument:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(*names, **kwargs)

    return add


def argument(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """An option of the CLI's own for the command declared above (argparse's arguments)."""

    def add(func: F) -> F:
        _PENDING.setdefault(func, []).append((names, kwargs))
        return func

    return add


def in_bounds(kind: type, lo: float, hi: float) -> Callable[[str], Any]:
    """An argparse `type` reading a number of `kind` within a field's protocol bounds, so
    a value out of range is a usage error naming the option (exit status 2)."""
    want = (
        f"an integer from {lo:.0f} to {hi:.0f}"
        if kind is int
        else f"a number from {lo:g} to {hi:g}"
    )

    def read(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, not {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {want}, not {text}")
        return value

    return read


def add_schema_arguments(p: argparse.ArgumentParser, schema: type[MethodRequest]) -> None:
    """One argparse argument per schema field with a `cli` spec: flag or positional, help,
    choices, type and default all come from the field."""
    types = field_types(schema)
    for f in fields(schema):
        meta = f.metadata
        flag = meta.get("cli")
        if flag is None:
            continue
        kind, _ = base_type(types[f.name])
        kw: dict[str, Any] = {"help": meta.get("cli_help") or meta["help"]}
        for key in ("choices", "metavar"):
            if meta.get(key):
                kw[key] = meta[key]
        if kind is bool:
            kw["action"] = "store_true"
        elif kind in (int, float):
            bounds = meta.get("bounds")
            kw["type"] = in_bounds(kind, *bounds) if bounds else kind
        if f.default is not MISSING and kind is not bool:
            kw["default"] = f.default
        if flag.startswith("-"):
            p.add_argument(flag, dest=f.name, **kw)
        else:
            if flag != f.name:
                raise ValueError(f"positional {flag!r} must be named like its field {f.name!r}")
            p.add_argument(flag, nargs="?" if f.default is not MISSING else None, **kw)


def request_from_args(schema: type[R], args: argparse.Namespace) -> R:
    """The request the parsed arguments ask for; fields marked `resolve` become absolute
    paths here, where the user's working directory is known."""
    values: dict[str, Any] = {}
    for f in fields(schema):
        if f.metadata.get("cli") is None:
            continue
        value = getattr(args, f.name)
        if value is None and f.default is not MISSING:
            continue
        if value is not None and f.metadata.get("resolve"):
            value = str(Path(value).expanduser().resolve())
        values[f.name] = value
    return schema(**values)
