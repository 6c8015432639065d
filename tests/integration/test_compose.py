"""The compose deployment, run as an operator runs it: `cp .env.example .env`,
set ports and passwords, `docker-compose up`; then a masked call through it,
counted at the far end, the spool surviving a recreated bridge container, and
nothing left behind.

Slow: the first run on a machine builds the Debian base roots and the images
(a few minutes); later runs reuse the cached base images and Docker's layer
cache. The stack runs from a copy of the repository with free ports, beside
`make run` and the other integration tests.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from bridge.privacy.crypto import KeyRing
from tests.integration.test_masked_call import number_forms, recording_level
from tests.support.ports import free_port, free_range

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGES = {"BASE_IMAGE_BOOKWORM": "masking-base/debian:bookworm", "BASE_IMAGE_SID": "masking-base/debian:sid"}
pytestmark = pytest.mark.compose


@dataclass
class ComposeStack:
    """What the SIPp harness and the row helpers need, for the compose stack."""

    workdir: Path
    project: str
    env: dict[str, str]
    keys: KeyRing | None = None

    @property
    def dsn(self) -> str:
        return self.env["MASKING_DATABASE_URL"]

    @property
    def sip_target(self) -> str:
        return f"127.0.0.1:{self.env['MASKING_SIP_PORT']}"

    @property
    def counterpart_port(self) -> int:
        return int(self.env["MASKING_OUTBOUND_PORT"])

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.env['MASKING_HTTP_PORT']}"

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        command = [*compose_command(), "--project-name", self.project, *args]
        result = subprocess.run(command, cwd=self.workdir, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}"
                                 f"\n{result.stderr[-3000:]}\n{self.logs()}")
        return result

    def masking(self, *args: str) -> str:
        """`masking ...` inside the bridge container, as an operator runs it
        (with-secrets: the kept secrets, the database URLs made from them)."""
        return self.compose("exec", "-T", "bridge", "with-secrets", "masking", *args, timeout=60).stdout

    def logs(self, service: str = "") -> str:
        result = subprocess.run([*compose_command(), "--project-name", self.project, "logs", "--no-color",
                                 "--tail", "40", *([service] if service else [])],
                                cwd=self.workdir, capture_output=True, text=True, timeout=60)
        return result.stdout[-6000:]

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def copy_out(self, service: str, path: str, dest: Path) -> Path:
        subprocess.run(["docker", "cp", f"{self.container(service)}:{path}", str(dest)], check=True,
                       capture_output=True, timeout=60)
        return dest

    def ready(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=3) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready().get("ready"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the bridge is not ready: {self.ready()}\n{self.logs()}")
            time.sleep(1)

    def metric(self, name: str) -> float | None:
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None


def compose_command() -> list[str]:
    return ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]


def run_script(name: str, *args: str, timeout: float = 1200) -> None:
    result = subprocess.run([str(REPO / "scripts" / name), *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"scripts/{name} failed:\n{result.stderr[-3000:]}")


def copy_repository(dest: Path) -> None:
    """What a clone holds (tracked and new files, nothing ignored: no .venv, .run, .env)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def configure(env_file: Path) -> dict[str, str]:
    """What an operator changes in the copied .env.example: ports (free ones
    here) and the local base images (no registry here). The secrets stay empty,
    as shipped: the stack makes them on its first start. The compose
    PostgreSQL's password is set here only so the test can read the rows."""
    rtp_start, rtp_end = free_range(200)
    db_port, db_password = free_port(), secrets.token_hex(12)
    changes = {
        **{name: str(free_port()) for name in ("MASKING_ARI_PORT", "MASKING_AMI_PORT", "MASKING_SIP_PORT",
                                               "MASKING_OUTBOUND_PORT", "MASKING_HTTP_PORT", "MASKING_AGI_PORT")},
        "MASKING_RTP_START": str(rtp_start), "MASKING_RTP_END": str(rtp_end),
        "POSTGRES_PORT": str(db_port), "POSTGRES_PASSWORD": db_password,
        "MASKING_DATABASE_URL": f"postgresql://postgres:{db_password}@127.0.0.1:{db_port}/masking",
        "MASKING_INSTANCE_NAME": f"compose-{os.getpid()}",
        **BASE_IMAGES,
    }
    lines = env_file.read_text().splitlines()
    for i, line in enumerate(lines):
        name = line.split("=", 1)[0]
        if name in changes and not line.startswith("#"):
            lines[i] = f"{name}={changes[name]}"
    env_file.write_text("\n".join(lines) + "\n")
    values = {}
    for line in lines:
        match = re.match(r"^([A-Z_0-9]+)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip("'")
    return values


def query(dsn: str, sql: str, *args) -> list[dict]:
    async def run():
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_for_row(stack: ComposeStack, virtual_number: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = query(stack.dsn, "SELECT * FROM calls WHERE virtual_number = $1", virtual_number)
        except (OSError, asyncpg.PostgresError):
            rows = []
        if rows and rows[0]["disposition"] != "in_progress":
            return rows[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished call row for the virtual number: {rows}\n{stack.logs('bridge')}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory):
    run_script("docker-daemon")
    run_script("docker-base", *(tag.rsplit(":", 1)[1] for tag in BASE_IMAGES.values()))
    workdir = tmp_path_factory.mktemp("compose") / "masking-bridge"
    workdir.mkdir()
    copy_repository(workdir)
    subprocess.run(["cp", ".env.example", ".env"], cwd=workdir, check=True)
    env = configure(workdir / ".env")
    stack = ComposeStack(workdir, f"maskingtest{os.getpid()}{uuid.uuid4().hex[:6]}", env)
    started = time.monotonic()
    try:
        stack.compose("build", "--force-rm", timeout=1800)
        built = time.monotonic()
        # What a rebuild left untagged (with vfs, each is a full copy of its root).
        subprocess.run(["docker", "image", "prune", "--force", "--filter", "label=masking-bridge.image"],
                       capture_output=True, timeout=300)
        stack.compose("up", "--detach", timeout=600)
        stack.wait_ready()
        print(f"compose: images built in {built - started:.0f} s, stack ready {time.monotonic() - built:.0f} s later")
        stack.keys = KeyRing.load(stack.copy_out("bridge", "/var/lib/masking/keys/keys.json",
                                                 workdir / "keys.json"))
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300, check=False)


def inspect(container: str) -> dict:
    return json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, check=True, text=True,
                                     timeout=30).stdout)[0]


def test_every_service_is_healthy_and_runs_unprivileged(compose_stack):
    for service in ("postgres", "asterisk", "bridge"):
        container = compose_stack.container(service)
        deadline = time.monotonic() + 90
        while (state := inspect(container))["State"]["Health"]["Status"] == "starting" \
                and time.monotonic() < deadline:
            time.sleep(1)
        assert state["State"]["Health"]["Status"] == "healthy", (service, state["State"]["Health"])
        assert state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", service
        uid = compose_stack.compose("exec", "-T", service, "id", "-u").stdout.strip()
        assert uid != "0", f"{service} runs as root"


def test_the_secrets_left_empty_are_made_on_first_start_and_kept_private(compose_stack):
    kept = compose_stack.compose("exec", "-T", "bridge", "sh", "-c",
                                 "stat -c %a /var/lib/masking/secrets/stack.env;"
                                 " awk -F= '{print $1, length($2)}' /var/lib/masking/secrets/stack.env").stdout
    mode, *lines = kept.split("\n")
    lengths = dict(line.split() for line in lines if line.strip())
    assert mode == "600"
    assert set(lengths) == {"MASKING_ARI_PASSWORD", "MASKING_AMI_PASSWORD", "MASKING_WEBHOOK_SECRET",
                            "MASKING_AGI_SECRET", "POSTGRES_PASSWORD", "MASKING_APP_DB_PASSWORD"}
    assert all(int(n) >= 16 for n in lengths.values()), lengths
    served_as = compose_stack.compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "masking", "-Atc",
                                      "SELECT DISTINCT usename FROM pg_stat_activity"
                                      " WHERE application_name = 'masking-bridge'").stdout.split()
    assert served_as == ["masking_app"], "the bridge serves as its least-privileged role only"


def test_a_masked_call_through_the_compose_stack_is_bridged_recorded_and_sealed(compose_stack, place_call):
    virtual, a, b = "+6566100001", "+6596100001", "+6586100001"
    compose_stack.masking("numbers", "add", virtual)
    compose_stack.masking("sessions", "create", "--purpose", "delivery_order", "--a", a, "--b", b, "--ttl", "600")

    # The counterpart hears the recording notice (from the sounds volume) on
    # answer, then talks: long enough for seconds of recorded audio after it.
    call = place_call(a, virtual, via=compose_stack, uas="uas_answer.xml", talk_ms=8000, timeout=60)

    assert call.caller.succeeded, call.caller.output
    assert call.counterpart.succeeded, call.counterpart.output
    invite = next(m for m in call.counterpart.received() if m.startswith("INVITE"))
    assert f"<sip:{virtual}@" in invite.split("From:", 1)[1].splitlines()[0]
    received = "\n".join(call.counterpart.received())
    assert not any(form in received for form in number_forms(a)), "the caller's number reached the counterpart"
    assert call.counterpart_rtp.level > 200, "no audio reached the counterpart"

    row = wait_for_row(compose_stack, virtual)
    assert row["disposition"] == "answered" and row["path"] == "ari"
    deadline = time.monotonic() + 30
    while not (recordings := query(compose_stack.dsn, "SELECT * FROM recordings WHERE call_id = $1",
                                                  row["id"])):
        assert time.monotonic() < deadline, "no recording row"
        time.sleep(0.5)
    recording = recordings[0]
    local = compose_stack.copy_out("bridge", recording["storage_path"],
                                   compose_stack.workdir / Path(recording["storage_path"]).name)
    seconds, level = recording_level(compose_stack, {**recording, "storage_path": str(local)})
    assert seconds > 2 and level > 200, (seconds, level)
    # Sealed from Asterisk's spool, on the volume the two containers share: never downloaded over ARI.
    downloads = 'masking_ari_requests_total{operation="GET /recordings/stored/{id}/file",outcome="ok"}'
    assert compose_stack.metric(downloads) is None, "the bridge downloaded the recording: it does not share the spool"


def tone_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    frames = b"".join(struct.pack("<h", (n % 20 - 10) * 1000) for n in range(int(rate * seconds)))
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(frames), b"WAVE", b"fmt ", 16, 1, 1, rate,
                       rate * 2, 2, 16, b"data", len(frames)) + frames


def test_uploaded_wait_audio_lands_where_the_asterisk_container_plays_it(compose_stack):
    token = json.loads(compose_stack.masking("apikeys", "create", "--name", "compose-test",
                                             "--scope", "sessions"))["token"]
    request = urllib.request.Request(f"{compose_stack.http}/v1/wait-audio?name=jingle", method="POST",
                                     data=tone_wav(), headers={"Authorization": f"Bearer {token}",
                                                               "Content-Type": "audio/wav"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        audio_id = json.loads(response.read())["id"]
    played_from = f"/usr/share/asterisk/sounds/en/masking/wait/{audio_id}.wav"
    assert compose_stack.compose("exec", "-T", "asterisk", "test", "-s", played_from, check=False).returncode == 0
    notice = "/usr/share/asterisk/sounds/en/masking/masking-recording-notice.wav"
    assert compose_stack.compose("exec", "-T", "asterisk", "test", "-s", notice, check=False).returncode == 0


def test_a_write_spooled_during_a_database_outage_survives_a_recreated_bridge_container(compose_stack, place_call):
    virtual, a, b = "+6566100002", "+6596100002", "+6586100002"
    compose_stack.masking("numbers", "add", virtual)
    compose_stack.masking("sessions", "create", "--purpose", "delivery_order", "--a", a, "--b", b, "--ttl", "600")
    compose_stack.compose("stop", "postgres")

    call = place_call(a, virtual, via=compose_stack, uac="uac_rejected.xml",
                      uac_values={"final_status": 503, "tag": "compose-db-down"}, timeout=60)
    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "the caller heard no prompt"
    deadline = time.monotonic() + 30
    while not compose_stack.metric("masking_spool_depth"):
        assert time.monotonic() < deadline, "nothing was spooled"
        time.sleep(0.5)

    # A new container (not a restart of the same one): only the volume carries the spool.
    compose_stack.compose("rm", "--stop", "--force", "bridge")
    compose_stack.compose("start", "postgres")
    compose_stack.compose("up", "--detach", "bridge", timeout=600)
    compose_stack.wait_ready()

    row = wait_for_row(compose_stack, virtual)
    assert row["disposition"] == "rejected" and row["reject_reason"] == "database_unavailable"
    assert '"spool.replayed"' in compose_stack.compose("logs", "--no-color", "bridge").stdout


def test_down_leaves_no_container_and_no_volume(compose_stack):
    compose_stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")
    label = f"label=com.docker.compose.project={compose_stack.project}"
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True,
                                check=True, timeout=30).stdout.split()
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", label], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    assert containers == [] and volumes == []
