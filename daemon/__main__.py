"""`python -m daemon`: run the daemon (the CLI spawns this when no daemon is running)."""

import sys

from daemon.main import run

# Guarded: a spawned worker process (daemon.graph_pool) imports the main module again.
if __name__ == "__main__":
    sys.exit(run(foreground="--detached" not in sys.argv))
