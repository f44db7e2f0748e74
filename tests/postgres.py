"""A throwaway PostgreSQL cluster for the tests: Debian's initdb and pg_ctl in a temporary
folder, listening on a Unix socket only, stopped and deleted at the end. No system service is
needed; as root the cluster runs as the `postgres` account (PostgreSQL refuses root).

In CI (`CI` set) a cluster that cannot start fails the tests that need it; elsewhere they skip
and say why."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path


def bindir() -> Path | None:
    """The newest Debian PostgreSQL server's bin folder (initdb, pg_ctl), else one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """One running cluster; `url(name)` gives an SQLAlchemy URL of a fresh database."""

    def __init__(self) -> None:
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="medattn-pg-"))
        if self.run_as:
            shutil.chown(self.folder, self.run_as)
        self.data = self.folder / "data"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-instructions")
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.folder}' -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.folder / "log"
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()} "
                               f"{log.read_text()[-2000:] if log.exists() else ''}")

    def url(self, name: str | None = None) -> str:
        """A new empty database's URL (psycopg over the cluster's socket)."""
        import psycopg

        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(host=str(self.folder), user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={self.folder}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
