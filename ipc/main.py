"""The `rcmd` console script: answers `--version` before importing anything, and loads
the CLI (argparse, the request schemas, the client) only for a command."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        from ipc import __version__

        print(f"rcmd {__version__}")
        return 0
    from ipc.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
