"""`python -m daemon`: run the daemon (the CLI spawns this when no daemon is running)."""

import sys

from daemon.main import run

sys.exit(run(foreground="--detached" not in sys.argv))
