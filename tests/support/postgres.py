"""A PostgreSQL cluster of the test's own, to stop and start at will.

Tests that take the database away never touch the shared server: they
`initdb` a cluster in a temporary directory and run it on a free port. As root
(CI), the server runs as the `postgres` user, as PostgreSQL requires.
`Cluster(primary=...)` is a streaming replica of another such cluster, made
with `pg_basebackup -R`, to promote while the service runs.
"""
from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.support.ports import free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return Path(found[-1])


class Cluster:
    def __init__(self, primary: "Cluster | None" = None):
        self.bin = _bin_dir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="masking-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self._as_postgres = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        if primary is None:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        else:
            # A streaming replica: a copy of the running primary, with
            # standby.signal and primary_conninfo written (-R).
            self._run("pg_basebackup", "-D", str(self.data), "-h", "127.0.0.1", "-p", str(primary.port),
                      "-U", "postgres", "-X", "stream", "-R", "--no-sync",
                      "-d", f"application_name=replica{self.port}")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_postgres, str(self.bin / tool), *args], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: as if the server crashed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """The replica becomes a primary that accepts writes."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def execute(self, sql: str, database: str = "postgres"):
        async def run():
            conn = await asyncpg.connect(self.dsn(database))
            try:
                return await conn.fetch(sql)
            finally:
                await conn.close()

        return asyncio.run(run())

    def require_synchronous_replica(self, timeout: float = 30) -> None:
        """Every commit on this primary waits until a replica has it, so a
        promoted replica has every committed row. Set on the primary alone
        (ALTER SYSTEM writes this cluster's own file, which no replica copies)."""
        self.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while not self.execute("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'"):
            if time.monotonic() > deadline:
                raise RuntimeError("no synchronous replica connected to the primary")
            time.sleep(0.1)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        try:
            self.stop("fast")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
