"""A real Ray cluster on this machine for the tests: a head and worker nodes started with
`ray start --block`, each in a session of its own, all in one temporary folder.

`ray stop` would end every Ray process of the machine (other users' too), so the end is
scoped: the processes of the nodes' sessions (`ray start` itself, the GCS, raylets,
workers, actors) are signalled by pid, SIGTERM first, SIGKILL for what stays.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import REPO, wait_until

#: Ports a node listens on besides the GCS port; each gets a free one, so that this
#: cluster never meets another one running on the machine.
_NODE_PORTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-grpc-port",
    "--dashboard-agent-listen-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


#: For the nodes and every client of them: no usage report, and no token authentication.
#: Ray 2.60 turns tokens on for a new cluster whenever ~/.ray/auth_token exists (any
#: earlier local `ray.init()` of the user writes one), and a client whose environment
#: says otherwise is refused; saying it here keeps the tests off that shared file.
CLIENT_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: the sockets stay bound until all are taken, so the
    kernel cannot hand the same one out twice (one at a time it did, and Ray refused to
    start with two components on one port)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def free_port() -> int:
    return free_ports(1)[0]


def ray_bin() -> Path:
    return Path(sys.executable).parent / "ray"


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return ray_bin().exists()


class LocalRayCluster:
    """Nodes of one Ray cluster on 127.0.0.1, each with `cpus` CPUs."""

    def __init__(self, cpus: int = 1, port: int | None = None) -> None:
        # Short: Ray's Unix sockets live under it, and their paths must stay < 108 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="rray-"))
        self.cpus = cpus
        self.port = port or free_port()
        #: Every port handed to a node so far: a later node never gets one of them.
        self._taken = {self.port}
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen[bytes]] = []
        # TMPDIR: the actors keep their model graph under the temporary folder; this
        # cluster's own, removed at the end.
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(self.temp), **CLIENT_ENV}

    def _ports(self, count: int) -> list[int]:
        """`count` free ports distinct from each other and from every earlier node's."""
        while True:
            ports = free_ports(count)
            if not self._taken.intersection(ports):
                self._taken.update(ports)
                return ports

    def _start_node(self, head: bool) -> None:
        worker, dashboard, client, *node_ports = self._ports(3 + len(_NODE_PORTS))
        args = [str(ray_bin()), "start", "--block", "--node-ip-address=127.0.0.1"]
        args += [f"--num-cpus={self.cpus}", "--num-gpus=0", "--disable-usage-stats"]
        args += [f"--min-worker-port={worker}", "--max-worker-port=0"]
        args += [f"{flag}={port}" for flag, port in zip(_NODE_PORTS, node_ports, strict=True)]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false"]
            args += [f"--dashboard-port={dashboard}"]
            args += [f"--ray-client-server-port={client}", f"--temp-dir={self.temp}"]
        else:
            args += [f"--address={self.address}"]
        log = (self.temp / f"node{len(self.nodes)}.log").open("wb")
        self.nodes.append(
            subprocess.Popen(
                args, env=self.env, stdout=log, stderr=log, start_new_session=True, cwd=REPO
            )
        )

    def alive_nodes(self) -> int:
        for node in self.nodes:
            if node.poll() is not None:
                logs = "\n".join(p.read_text()[-2000:] for p in self.temp.glob("node*.log"))
                raise AssertionError(f"a Ray node exited with {node.returncode}:\n{logs}")
        try:  # ray.init would wait a minute for a head that does not listen yet
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return 0
        out = subprocess.run(
            [sys.executable, "-c", _COUNT_NODES, self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return int(out.stdout.strip() or 0)

    def start(self, nodes: int) -> LocalRayCluster:
        """Start the head and `nodes - 1` workers; stop them all if they do not come up."""
        try:
            self._start_node(head=True)
            for _ in range(nodes - 1):
                self._start_node(head=False)
            wait_until(lambda: self.alive_nodes() == nodes, timeout=120, interval=0.5)
        except BaseException:
            self.stop()
            raise
        return self

    def session_pids(self) -> list[int]:
        """Every process left in the nodes' sessions (the nodes' own included)."""
        sids = {p.pid for p in self.nodes}
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.getsid(int(entry)) in sids:
                        pids.append(int(entry))
        return pids

    def worker_pids(self, title: str) -> list[int]:
        """Processes of this cluster whose title (Ray sets `ray::Class.method` while an
        actor runs a task) starts with `title`."""
        found = []
        for pid in self.session_pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                    found.append(pid)
        return found

    def stop(self) -> None:
        """SIGTERM to every process of the nodes' sessions, SIGKILL to what is left
        after a few seconds."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            for pid in self.session_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            for node in self.nodes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.wait(max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not self.session_pids(), timeout=grace, interval=0.2)
            if not self.session_pids():
                break
        shutil.rmtree(self.temp, ignore_errors=True)


_COUNT_NODES = """
import sys, ray
ray.init(address=sys.argv[1], _node_ip_address="127.0.0.1", log_to_driver=False,
         logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
"""
