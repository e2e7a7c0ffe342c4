"""Local services as real child processes: Redis, s3rver (and any argv; Kafka is ``infra.kafka``).

Used by ``make run`` (``infra.run``) and by the integration-test fixtures. Each child runs in
its own session (so a terminal's Ctrl-C reaches only the supervisor, which stops children in
order) and gets ``PR_SET_PDEATHSIG = SIGTERM`` so it dies if the process that started it dies.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any, Mapping, Sequence

from chat.errors import Unavailable

INFRA_DIR = Path(__file__).resolve().parent
S3RVER_BIN = INFRA_DIR / "node_modules" / ".bin" / "s3rver"
S3_BUCKET = "chat-test"  # made by s3rver at start; readiness probes it
S3_CREDENTIALS = "S3RVER"  # s3rver's fixed access key and secret
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class ServiceError(Unavailable):
    """A local service failed to start, or died."""


LOWEST_PICKED_PORT = 20_000  # above the fixed ports `make run` uses (19092, 16379, 19042, 9464)


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports (and for bind to port 0)."""
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral range
    when there is room: a port the OS hands out for port 0 could meanwhile become the source
    port of any outgoing connection, and the service meant for it then failed to bind
    ("Address already in use"; a Redis Cluster test's node did, under the full suite)."""
    low, _ = ephemeral_ports()
    for _ in range(100 if low - LOWEST_PICKED_PORT >= 1000 else 0):
        port = random.randrange(LOWEST_PICKED_PORT, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _child_setup(parent_pid: int) -> None:
    """Runs in the child between fork and exec: die with the parent (Linux only)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class Service:
    """One child process with a log file, a readiness probe and an orderly stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = dict(os.environ if env is None else env)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.port: int | None = None  # the TCP port it listens on, when it has one
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this run's output starts in the (appended) log file

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def start(self) -> "Service":
        if self.running:
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        if self.port is not None and port_open(self.port):
            # Without this check the readiness probe would happily talk to the other process.
            raise ServiceError(f"{self.name}: port {self.port} is already in use (another instance running?)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda pid=os.getpid(): _child_setup(pid),
            )
        return self

    def ready(self) -> bool:
        """One readiness probe; subclasses override. The base class: the process is alive."""
        return self.running

    def wait_ready(self, timeout: float = 30.0) -> "Service":
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise ServiceError(f"{self.name} exited with {self.returncode} while starting\n{self.log_tail()}")
            try:
                if self.ready():
                    return self
            except Exception:  # a probe that raises means "not yet"
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The last lines this run wrote to the log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                tail = deque(f.read().decode(errors="replace").splitlines(keepends=True), maxlen=lines)
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "".join(tail)

    def __enter__(self) -> "Service":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3rver(Service):
    """Filesystem-backed S3 (npm ``s3rver`` 3.7.1) for the S3 media backend's tests and bench."""

    def __init__(self, port: int, data_dir: str | os.PathLike[str], *, log_path: str | os.PathLike[str]) -> None:
        if not S3RVER_BIN.exists():
            raise ServiceError(f"{S3RVER_BIN} is missing: run infra/install.sh (npm ci in infra/)")
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        argv = [S3RVER_BIN, "-d", data_dir, "-a", "127.0.0.1", "-p", str(port),
                "--no-vhost-buckets", "--configure-bucket", S3_BUCKET]
        super().__init__("s3rver", [str(a) for a in argv], log_path=log_path)
        self.port = port
        self.data_dir = Path(data_dir)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        # The bucket is created before the server listens, so GET /<bucket> answering 200 means both.
        try:
            with urllib.request.urlopen(f"{self.endpoint}/{S3_BUCKET}", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False


class Redis(Service):
    """``redis-server`` in the foreground (we own the process), append-only file on.

    ``users`` (name -> password) makes ACL users with every right and switches the passwordless
    ``default`` user off; ``tls`` (``infra.certs.Certs``) serves TLS only, on ``port``, with
    client certificates optional: ``url`` is then ``rediss://``.
    """

    def __init__(self, port: int, data_dir: str | os.PathLike[str], *, log_path: str | os.PathLike[str],
                 users: Mapping[str, str] | None = None, tls: Any = None) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--bind", "127.0.0.1", "--dir", str(Path(data_dir).resolve()),
                "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes"]
        if tls is not None:
            argv += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.server_cert),
                     "--tls-key-file", str(tls.server_key), "--tls-ca-cert-file", str(tls.ca),
                     "--tls-auth-clients", "optional"]
        else:
            argv += ["--port", str(port)]
        self.users = dict(users or {})
        for name, password in self.users.items():
            argv += ["--user", name, "on", f">{password}", "~*", "&*", "+@all"]  # one line of words
        if self.users:
            argv += ["--user", "default", "off"]
        super().__init__("redis", argv, log_path=log_path)
        self.port = port
        self.data_dir = Path(data_dir)
        self.tls = tls

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def connect(self, timeout: float = 1.0) -> socket.socket:
        """A socket to this server, over TLS when it has it, signed in as its first user."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            if self.tls is not None:
                s = ssl.create_default_context(cafile=str(self.tls.ca)).wrap_socket(s, server_hostname="127.0.0.1")
            if self.users:
                name, password = next(iter(self.users.items()))
                s.sendall(f"AUTH {name} {password}\r\n".encode())
                if not s.recv(16).startswith(b"+OK"):
                    raise ServiceError(f"{self.name}: AUTH as {name} refused")
        except BaseException:
            s.close()
            raise
        return s

    def ready(self) -> bool:
        with self.connect() as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
