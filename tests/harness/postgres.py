"""A private, throwaway PostgreSQL cluster for one test session.

The cluster lives under the system temp folder, listens only on a Unix socket in its
own directory, and runs with durability switched off (fsync, synchronous_commit,
full_page_writes), so initdb + start take about a second. ``initdb`` refuses to run as
root, so when the tests run as root every server command runs as the ``postgres`` OS
user through ``runuser`` and the directories are handed to that user.

``PgCluster.stop()`` is idempotent and is also registered with ``atexit``; SIGTERM is
turned into a normal exit so ``atexit`` runs; and a small watchdog process stops the
cluster if the test process vanishes without either (SIGKILL, OOM killer). A session
that dies half-way does not leave a postmaster behind.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

BINDIR_ENV = "BATCH_ENRICH_PG_BINDIR"
# every wait on initdb, pg_ctl and the server is a hang guard only: generous, so that a
# busy machine (the suite beside other work) never trips it
HANG_GUARD_SECONDS = 900
SUPERUSER = "postgres"
OS_USER = "postgres"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found via $"
    + BINDIR_ENV
    + ", `pg_config --bindir`, PATH or /usr/lib/postgresql/*/bin. "
    "Install them with `apt-get install postgresql` (or point $"
    + BINDIR_ENV
    + " at the directory holding initdb)."
)


class PostgresHarnessError(RuntimeError):
    """The test cluster could not be found, initialised or started."""


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            check=True,
            timeout=HANG_GUARD_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip())


def _version_key(path: Path) -> tuple[int, ...]:
    parts = path.parent.name.split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def find_bindir() -> Path:
    """Return the directory holding initdb/pg_ctl/postgres, newest version preferred."""
    candidates: list[Path] = []
    override = os.environ.get(BINDIR_ENV)
    if override:
        candidates.append(Path(override))
    from_pg_config = _pg_config_bindir()
    if from_pg_config is not None:
        candidates.append(from_pg_config)
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), key=_version_key, reverse=True
    )
    candidates.extend(debian)
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate
    raise PostgresHarnessError(INSTALL_HINT)


def free_port() -> int:
    """A TCP port nobody listens on right now; it names the socket file of the cluster."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", OS_USER, "--"]


def _hand_over(path: Path) -> None:
    """As root, give a directory to the postgres OS user; otherwise nothing to do."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise PostgresHarnessError(
            f"running as root, but there is no {OS_USER!r} OS user to run the server as; "
            "`apt-get install postgresql` creates it"
        ) from exc
    os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class PgCluster:
    """A running private cluster. ``host`` is the socket directory."""

    bindir: Path
    base_dir: Path
    port: int
    user: str = SUPERUSER
    _stopped: bool = field(default=False, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return str(self.base_dir / "sock")

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "log" / "postgres.log"

    def conninfo(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname)

    def env(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq environment variables for subprocesses and dbt's env_var()."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": "",
            "PGDATABASE": dbname,
        }

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """Stop the server at once and delete every file of the cluster. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                [
                    *_run_as_prefix(),
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                check=False,
                timeout=HANG_GUARD_SECONDS,
            )
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.kill()
            self._watchdog.wait(timeout=HANG_GUARD_SECONDS)

    # -- databases -------------------------------------------------------------------

    def create_database(self, dbname: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )


def _run_checked(args: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        check=False,
        timeout=HANG_GUARD_SECONDS,
        env=env,
    )
    if proc.returncode != 0:
        raise PostgresHarnessError(
            f"{what} failed (exit {proc.returncode}): {shlex.join(args)}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )


def _server_options(socket_dir: str, port: int) -> str:
    settings = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "listen_addresses": "",
        "unix_socket_directories": socket_dir,
        "port": str(port),
    }
    # pg_ctl hands -o to a shell, so every value is shell-quoted.
    return " ".join(f"-c {key}={shlex.quote(value)}" for key, value in settings.items())


def _wait_until_ready(cluster: PgCluster, timeout_s: float = HANG_GUARD_SECONDS) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(cluster.conninfo(), connect_timeout=2) as conn:
                conn.execute("select 1")
            return
        except psycopg.OperationalError as exc:
            last_error = exc
            time.sleep(0.05)
    raise PostgresHarnessError(
        f"the test cluster did not accept connections within {timeout_s:.0f}s: {last_error}\n"
        f"server log:\n{cluster.log_tail()}"
    )


# Runs in its own session: waits for the test process to disappear, then stops the
# cluster and deletes its files. argv: parent pid, base dir, then the pg_ctl stop command.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
parent, base_dir, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
subprocess.run(stop, capture_output=True, check=False, timeout=900)
shutil.rmtree(base_dir, ignore_errors=True)
"""


def _start_watchdog(cluster: PgCluster) -> subprocess.Popen[bytes]:
    stop = [
        *_run_as_prefix(),
        str(cluster.bindir / "pg_ctl"),
        "-D",
        str(cluster.data_dir),
        "-m",
        "immediate",
        "-w",
        "stop",
    ]
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(cluster.base_dir), *stop],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _exit_on_sigterm() -> None:
    """Make SIGTERM a normal exit (so atexit runs), unless someone else handles it."""

    def _exit(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    is_main = threading.current_thread() is threading.main_thread()
    if is_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)


def start_cluster(bindir: Path | None = None) -> PgCluster:
    """initdb + start a private cluster; the caller owns ``stop()`` (also run at exit)."""
    bindir = bindir or find_bindir()
    base_dir = Path(tempfile.mkdtemp(prefix="batch-enrich-pg-", dir=tempfile.gettempdir()))
    cluster = PgCluster(bindir=bindir, base_dir=base_dir, port=free_port())
    atexit.register(cluster.stop)
    _exit_on_sigterm()
    try:
        _hand_over(base_dir)
        for sub in ("sock", "log"):
            (base_dir / sub).mkdir(mode=0o700)
            _hand_over(base_dir / sub)
        prefix = _run_as_prefix()
        # A locale-independent cluster: UTF8 text, C collation, whatever the host has.
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        _run_checked(
            [
                *prefix,
                str(bindir / "initdb"),
                "--no-sync",
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
                str(cluster.data_dir),
            ],
            "initdb",
            env,
        )
        _run_checked(
            [
                *prefix,
                str(bindir / "pg_ctl"),
                "-D",
                str(cluster.data_dir),
                "-l",
                str(cluster.log_file),
                "-o",
                _server_options(cluster.host, cluster.port),
                "-w",
                "-t",
                str(HANG_GUARD_SECONDS),
                "start",
            ],
            "pg_ctl start",
            env,
        )
        cluster._watchdog = _start_watchdog(cluster)
        _wait_until_ready(cluster)
    except BaseException as exc:
        log = cluster.log_tail()
        cluster.stop()
        if isinstance(exc, PostgresHarnessError):
            raise PostgresHarnessError(f"{exc}\nserver log:\n{log}") from None
        raise
    return cluster


@contextmanager
def running_cluster(bindir: Path | None = None) -> Iterator[PgCluster]:
    cluster = start_cluster(bindir)
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class PgDatabase:
    """One fresh database of the test cluster."""

    dbname: str
    host: str
    port: int
    user: str
    conninfo: str
    env: dict[str, str]


@contextmanager
def fresh_database(cluster: PgCluster, prefix: str = "test") -> Iterator[PgDatabase]:
    """Create ``<prefix>_<uuid>``, yield it, drop it (with force) whatever happened."""
    dbname = f"{prefix}_{uuid.uuid4().hex}"
    cluster.create_database(dbname)
    try:
        yield PgDatabase(
            dbname=dbname,
            host=cluster.host,
            port=cluster.port,
            user=cluster.user,
            conninfo=cluster.conninfo(dbname),
            env=cluster.env(dbname),
        )
    finally:
        cluster.drop_database(dbname)
