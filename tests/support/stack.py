"""A whole stack for the integration tests: real Asterisk, PostgreSQL, service.

Every port is free-picked and every path is private to the run, so the suite
can run beside `make run` or another suite. The service runs as its own
process (`python -m bridge.cli serve`), exactly as an operator runs it, as an
application role of its own (least-privileged, made by `masking db upgrade`);
the tests look and tamper as the database's superuser (`Stack.dsn`).
"""
from __future__ import annotations

import asyncio
import base64
import shutil
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import asyncpg

from bridge.config import Settings
from bridge.privacy.crypto import KeyRing
from bridge.stack.asterisk import AsteriskInstance, find_install
from tests.support.keys import keys_file
from tests.support.ports import free_port, free_range

REPO = Path(__file__).resolve().parents[2]
ADMIN_DSN = os.environ.get("MASKING_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    settings: Settings
    asterisk: AsteriskInstance
    service: subprocess.Popen | None = None
    service_log: Path = field(init=False)

    def __post_init__(self):
        self.service_log = self.workdir / "service.log"

    @property
    def dsn(self) -> str:
        """The superuser's: what a test reads and changes by hand."""
        return self.settings.database_admin_url

    @property
    def app_dsn(self) -> str:
        """The application role's, as the service connects."""
        return self.settings.database_url

    @property
    def keys(self) -> KeyRing:
        return KeyRing.load(self.settings.keys_path)

    @property
    def sip_target(self) -> str:
        return f"{self.settings.asterisk.sip_host}:{self.settings.asterisk.sip_port}"

    @property
    def counterpart_port(self) -> int:
        return self.settings.asterisk.outbound_port

    # -- lifecycle ---------------------------------------------------------------
    def start_service(self, **overrides: str) -> None:
        env = {**os.environ, **self.env, **overrides}
        log = open(self.service_log, "ab")
        self.service = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "serve"], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.wait_connected()

    def wait_connected(self, timeout: float = 20) -> None:
        """Until the service's Stasis app is registered in Asterisk."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise RuntimeError(f"service exited:\n{self.service_log.read_text()[-3000:]}")
            # Asterisk keeps an application registered after its websocket
            # died: ask the service whether *it* is connected.
            try:
                with urllib.request.urlopen(f"http://{self.settings.http_host}:{self.settings.http_port}/readyz",
                                            timeout=2) as r:
                    checks = json.loads(r.read())["checks"]
            except urllib.error.HTTPError as exc:
                checks = json.loads(exc.read()).get("checks", {})
            except (urllib.error.URLError, OSError, ValueError):
                checks = {}
            if checks.get("ari"):
                return
            time.sleep(0.1)
        raise RuntimeError("service did not connect to ARI")

    def wait_ami(self, timeout: float = 20) -> None:
        """Until the service's AMI session is logged in (Asterisk tells it
        FullyBooted): calls before it are recorded by snoops, not MixMonitor."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.settings.http_host}:{self.settings.http_port}/readyz"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if json.loads(r.read())["checks"].get("asterisk"):
                        return
            except urllib.error.HTTPError as exc:
                if json.loads(exc.read()).get("checks", {}).get("asterisk"):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the service's AMI session did not log in")

    def stop_service(self) -> None:
        if self.service and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()
        self.service = None

    # -- observation -------------------------------------------------------------
    def ari(self, method: str, path: str):
        s = self.settings
        token = base64.b64encode(f"{s.ari_user}:{s.ari_password}".encode()).decode()
        request = urllib.request.Request(f"{s.ari_url}/ari{path}", method=method,
                                         headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = resp.read()
            return json.loads(body) if body else None

    def leftovers(self, timeout: float = 5.0) -> tuple[list, list]:
        """Channels and bridges still in Asterisk, after giving teardown `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            channels, bridges = self.ari("GET", "/channels"), self.ari("GET", "/bridges")
            if (not channels and not bridges) or time.monotonic() > deadline:
                return channels, bridges
            time.sleep(0.1)


def app_role_name() -> str:
    """Roles are the cluster's, not a database's: one per stack, so parallel runs never share one."""
    return f"masking_app_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def role_dsn(dsn: str, role: str) -> str:
    """`dsn` with its user replaced by `role`."""
    parts = urllib.parse.urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{urllib.parse.quote(role)}@{host}"))


def database_env(admin_dsn: str, database: str, app_role: str) -> dict[str, str]:
    """The two URLs: migrations as the admin, the service as its application role."""
    admin = admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    return {"MASKING_DATABASE_ADMIN_URL": admin, "MASKING_DATABASE_URL": role_dsn(admin, app_role)}


def make_settings(workdir: Path, database: str, rtp_ports: int = 200,
                  admin_dsn: str = ADMIN_DSN, app_role: str = "masking_app") -> tuple[Settings, dict[str, str]]:
    rtp_start, rtp_end = free_range(rtp_ports)
    stack_keys = workdir / "keys.json"
    if not stack_keys.exists():
        KeyRing.generate().save(stack_keys)
    env = {
        "MASKING_KEYS_FILE": str(stack_keys),
        **database_env(admin_dsn, database, app_role),
        "MASKING_DB_TIMEOUT": "2",
        "MASKING_ARI_PORT": str(free_port()),
        "MASKING_ARI_PASSWORD": uuid.uuid4().hex,
        "MASKING_ARI_APP": "masking-test",
        "MASKING_AMI_PORT": str(free_port()),
        "MASKING_AMI_PASSWORD": uuid.uuid4().hex,
        "MASKING_WEBHOOK_SECRET": uuid.uuid4().hex,
        "MASKING_AGI_SECRET": uuid.uuid4().hex,
        "MASKING_HTTP_PORT": str(free_port()),
        "MASKING_AGI_PORT": str(free_port()),
        "MASKING_SIP_PORT": str(free_port()),
        "MASKING_OUTBOUND_PORT": str(free_port()),
        "MASKING_RTP_START": str(rtp_start),
        "MASKING_RTP_END": str(rtp_end),
        "MASKING_INSTANCE_NAME": f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        "MASKING_RECORDING_DIR": str(workdir / "recordings"),
        "MASKING_STATE_DIR": str(workdir / "state"),
        "MASKING_DIAL_TIMEOUT": "4",
        "MASKING_LOG_LEVEL": "debug",
        "MASKING_TEST_HOOKS": "true",  # /debug/ari/drop for fault injection
        # The tests' webhook and out-of-session receivers listen on loopback over plain http.
        "MASKING_DEVELOPMENT": "true",
        "MASKING_OUTBOUND_ALLOW": "127.0.0.1",
        "MASKING_DRAIN_SECONDS": "10",
        # A short notice keeps the suite fast; tests/integration/test_consent.py runs the real one.
        "MASKING_NOTICE_SOUND": "beep",
        # The shipped purposes, with webhooks to the tests' receivers on loopback (and a few of the tests' own).
        "MASKING_PURPOSE_REGISTRY": str(REPO / "tests" / "support" / "purposes.toml"),
    }
    return Settings.from_env(env), env


async def create_database(name: str, admin_dsn: str = ADMIN_DSN) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str, admin_dsn: str = ADMIN_DSN, role: str | None = None) -> None:
    """Drop the database, and then `role` (whose only rights were in it)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if role:
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()


def migrate(env: dict[str, str]) -> None:
    env = {"MASKING_KEYS_FILE": str(keys_file()), **env}
    subprocess.run([sys.executable, "-m", "bridge.cli", "db", "upgrade"], cwd=REPO,
                   env={**os.environ, **env}, check=True, capture_output=True)


def keep_logs(asterisk: AsteriskInstance, workdir: Path) -> None:
    """Asterisk's logs, kept beside the test's files when its instance is
    removed: after a failure (an Asterisk that died, say) they say why."""
    if (asterisk.dir / "log").is_dir():
        shutil.copytree(asterisk.dir / "log", workdir / "asterisk-log", dirs_exist_ok=True)


@contextmanager
def running_stack(workdir: Path, admin_dsn: str = ADMIN_DSN, rtp_ports: int = 200,
                  **env_overrides: str) -> Iterator[Stack]:
    """Database, Asterisk and service on free ports; everything removed after."""
    database, role = f"masking_test_{os.getpid()}_{uuid.uuid4().hex[:6]}", app_role_name()
    settings, env = make_settings(workdir, database, rtp_ports, admin_dsn, role)
    env.update(env_overrides)
    settings = Settings.from_env(env)
    install = find_install(settings.asterisk.asterisk_root)
    asyncio.run(create_database(database, admin_dsn))
    migrate(env)
    asterisk = AsteriskInstance(settings, install)
    # As `masking run` does: the service shares this Asterisk's disk (a test sets "" for the ARI download).
    env.setdefault("MASKING_ASTERISK_RECORDING_DIR", str(asterisk.recording_spool))
    settings = Settings.from_env(env)
    stack = Stack(workdir=workdir, env=env, settings=settings, asterisk=asterisk)
    try:
        asterisk.start()
        stack.start_service()
        yield stack
    finally:
        stack.stop_service()
        asterisk.stop()
        keep_logs(asterisk, workdir)
        shutil.rmtree(asterisk.dir, ignore_errors=True)
        try:
            asyncio.run(drop_database(database, admin_dsn, role))
        except (OSError, asyncpg.PostgresError):
            pass  # a test may have taken the server away
