"""The embedded warehouse: a real PostgreSQL 16 from the ``pgserver`` wheel, under ``.local/warehouse``.

``pgserver``'s own server class listens on a unix socket only. Airflow connections, dbt profiles and GX
datasources all want a host and port, so this module drives the wheel's ``initdb`` and ``pg_ctl`` itself and
listens on 127.0.0.1 on a free port. The chosen port is remembered and reused while it stays free; when
another process holds it, a new one is picked. Nothing here ever stops a server it did not start: ``down``
acts only on the postmaster whose pid file lives in our data directory.

As root, PostgreSQL refuses to run, so the server runs as the ``pgserver`` system user the wheel creates.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg

from crm_pipeline.errors import EmbeddedWarehouseError
from crm_pipeline.paths import WAREHOUSE_DIR
from crm_pipeline.warehouse.url import WarehouseUrl

SUPERUSER = "postgres"
WAREHOUSE_DATABASE = "crm"
AIRFLOW_DATABASE = "airflow"
_SYSTEM_USER_WHEN_ROOT = "pgserver"


@dataclass(frozen=True)
class ServerStatus:
    pid: int
    port: int


def _free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on it, else a port the kernel hands out."""
    candidates = [preferred] if preferred else []
    for port in [*candidates, 0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedWarehouseError("no free TCP port on 127.0.0.1")


def pgserver_modules() -> tuple[Path, ModuleType]:
    """The wheel's binary directory and its helper module. pgserver asks platformdirs for a runtime directory at
    import (and warns when XDG_RUNTIME_DIR is unset); we never use it, so the warning is silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import utils
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH, utils


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only, from the moment the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedWarehouse:
    """Lifecycle of the embedded server. All methods are idempotent."""

    def __init__(self, base_dir: Path = WAREHOUSE_DIR) -> None:
        self.base_dir = base_dir
        self.pgdata = base_dir / "pgdata"
        self.port_file = base_dir / "port"
        self.password_file = base_dir / "password"
        self.log_file = self.pgdata / "server.log"

    # -- state ---------------------------------------------------------------------------------------
    def status(self) -> ServerStatus | None:
        """The running postmaster of *our* data directory, read from its pid file, or ``None``."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        pid, port = int(lines[0]), int(lines[3])
        return ServerStatus(pid=pid, port=port) if _pid_alive(pid) else None

    def url(self, database: str = WAREHOUSE_DATABASE) -> WarehouseUrl:
        status = self.status()
        if status is None:
            raise EmbeddedWarehouseError(
                f"the embedded warehouse in {self.pgdata} is not running: start it with `crm warehouse up`"
            )
        return WarehouseUrl("127.0.0.1", status.port, SUPERUSER, self.password_file.read_text().strip(), database)

    # -- lifecycle -----------------------------------------------------------------------------------
    def up(self) -> WarehouseUrl:
        """Initialise (first time), start (when stopped) and create the databases; return the warehouse URL."""
        if self.status() is None:
            self._init_once()
            self._start()
        url = self.url()
        self._ensure_databases(url)
        return url

    def down(self) -> bool:
        """Stop our server; ``False`` when it was not running."""
        if self.status() is None:
            return False
        self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")
        return True

    def restart(self) -> None:
        """Stop (fast: open sessions are cut, as in a crash or a failover) and start again on the same port, as
        ``pg_ctl restart`` does with the options it was started with. For operators, and the fault tests."""
        if self.status() is None:
            raise EmbeddedWarehouseError(f"the embedded warehouse in {self.pgdata} is not running")
        self._pg("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log_file), "-m", "fast", "-w", "-t", "60", "restart")

    # -- internals -----------------------------------------------------------------------------------
    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        pgserver_modules()[1].ensure_user_exists(_SYSTEM_USER_WHEN_ROOT)  # the wheel's helper, used as it does
        return _SYSTEM_USER_WHEN_ROOT

    def _pg(self, tool: str, *args: str, timeout: int = 120) -> str:
        bin_dir = pgserver_modules()[0]
        user = self._system_user()
        try:
            proc = subprocess.run(
                [str(bin_dir / tool), *args],
                user=user,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd="/",
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedWarehouseError(f"{tool} timed out after {timeout}s; see {self.log_file}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise EmbeddedWarehouseError(f"{tool} failed: {detail[-1] if detail else proc.returncode}")
        return proc.stdout

    def _grant_access(self) -> None:
        """As root, let the ``pgserver`` user reach the data dir and the wheel's binaries (as pgserver does)."""
        user = self._system_user()
        if user is None:
            return
        import pwd
        import stat

        bin_dir, utils = pgserver_modules()
        utils.ensure_prefix_permissions(self.pgdata)
        utils.ensure_prefix_permissions(bin_dir)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        utils.ensure_folder_permissions(bin_dir, read | execute)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", read)
        entry = pwd.getpwnam(user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _init_once(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._grant_access()
        # TCP clients authenticate with a random superuser password that never leaves .local/ (mode 0600);
        # only the server's own user may use the (disabled) unix socket without one.
        password = secrets.token_urlsafe(24)
        write_private(self.password_file, password)
        pwfile = self.base_dir / "initdb.pw"  # initdb wants an empty data dir
        write_private(pwfile, password)
        if (user := self._system_user()) is not None:  # initdb runs as that user and must read it
            import pwd

            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        try:
            self._pg(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                SUPERUSER,
            )
        except EmbeddedWarehouseError:
            shutil.rmtree(self.pgdata, ignore_errors=True)  # a half-made cluster would block the next attempt
            raise
        finally:
            pwfile.unlink(missing_ok=True)

    def _start(self) -> None:
        self._grant_access()
        remembered = int(self.port_file.read_text()) if self.port_file.exists() else None
        last_error: EmbeddedWarehouseError | None = None
        for attempt in range(3):
            port = _free_port(remembered if attempt == 0 else None)
            options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200 -c fsync=off -c synchronous_commit=off"
            try:
                self._pg(
                    "pg_ctl",
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
            except EmbeddedWarehouseError as exc:  # a port race: somebody took it between bind and start
                last_error = exc
                continue
            self.port_file.write_text(str(port))
            return
        raise EmbeddedWarehouseError(f"could not start the embedded warehouse: {last_error}; see {self.log_file}")

    def _ensure_databases(self, url: WarehouseUrl) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(url.with_database("postgres").libpq(), autocommit=True, connect_timeout=5)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with conn:
            existing = {row[0] for row in conn.execute("select datname from pg_database")}
            for name in (WAREHOUSE_DATABASE, AIRFLOW_DATABASE):
                if name not in existing:
                    with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                        conn.execute(f'create database "{name}"')
