"""The SIP edge: Debian's Kamailio 5.6 run as a private instance with the
project's configuration (edge/kamailio.cfg), and its JSON-RPC (over UDP).

The instance has its own config, ports, pid file and runtime directory, so it
never touches the system service and several stacks share one machine.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.config import Settings
from bridge.stack.nodes import NODE_GROUP, Node, rpc_port



def edge_dir() -> Path:
    """The configuration template: `MASKING_EDGE_DIR`, else the copy a wheel
    carries (setup.py puts it in the package), else the checkout's `edge/`."""
    if os.environ.get("MASKING_EDGE_DIR"):
        return Path(os.environ["MASKING_EDGE_DIR"])
    packaged = Path(__file__).resolve().parent / "edge"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "edge"


EDGE_DIR = edge_dir()
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
ROUND_ROBIN = 4  # dispatcher algorithm; why: docs/scaling.md
DISABLED, PROBING = 4, 8  # dispatcher.list flags: a drained node is neither used nor probed
_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LOG_LEVELS = {"debug": 3, "info": 2, "warning": 1, "error": -1}


class EdgeNotInstalled(RuntimeError):
    """No `kamailio` binary: run scripts/bootstrap."""


class EdgeStartError(RuntimeError):
    """Kamailio did not come up; the message carries the end of its log."""


class EdgeUnavailable(RuntimeError):
    """The edge's RPC did not answer, or refused the command."""


@dataclass(frozen=True)
class NodeState:
    """One node as the edge sees it (dispatcher.list)."""

    name: str
    uri: str
    flags: str  # AP, IP, TP, DX...

    @property
    def state(self) -> str:
        return {"A": "active", "I": "inactive", "T": "trying", "D": "disabled"}.get(self.flags[:1], "unknown")

    @property
    def takes_calls(self) -> bool:
        # `trying` is still selected: it failed once but not yet enough times.
        return self.state in ("active", "trying")


def carrier_subnets(match: str) -> str:
    """MASKING_INBOUND_MATCH (addresses or networks, as PJSIP's identify takes
    them) as the comma-separated networks Kamailio's is_in_subnet takes."""
    nets = [str(ipaddress.ip_network(part.strip(), strict=False)) for part in match.split(",") if part.strip()]
    if not nets:
        raise ValueError("MASKING_INBOUND_MATCH names no address")
    return ",".join(nets)


def edge_values(settings: Settings, run_dir: Path) -> dict[str, str]:
    ast, edge = settings.asterisk, settings.edge
    return {
        "instance_name": f"masking-edge-{ast.instance_name}",
        "log_level": str(_LOG_LEVELS.get(settings.log_level, 2)),
        "children": str(edge.children),
        "module_dir": str(edge.kamailio_modules),
        "sip_host": ast.sip_host,
        "sip_port": str(ast.sip_port),
        "rpc_host": edge.rpc_host,
        "rpc_port": str(rpc_port(settings)),
        "run_dir": str(run_dir),
        "setup_timeout_ms": str(edge.setup_timeout_ms),
        "probe_interval": str(edge.probe_interval),
        "probe_threshold": str(edge.probe_threshold),
        "node_group": str(NODE_GROUP),
        "algorithm": str(ROUND_ROBIN),
        "inbound_match": carrier_subnets(ast.inbound_match),
        "outbound_host": ast.outbound_host,
        "outbound_port": str(ast.outbound_port),
    }


def render_config(values: dict[str, str], template: Path = EDGE_DIR / "kamailio.cfg") -> str:
    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise KeyError(f"{template.name}: no value for placeholder {match.group(1)!r}")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(fill, template.read_text())


def dispatcher_list(nodes: list[Node], drained: frozenset[str] = frozenset()) -> str:
    """The nodes as dispatcher destinations; a drained node starts disabled."""
    lines = ["# setid destination flags priority attrs (rendered by masking)"]
    for node in nodes:
        flags = DISABLED if node.name in drained else PROBING
        lines.append(f"{NODE_GROUP} {node.sip_uri} {flags} 0 duid={node.name}")
    return "\n".join(lines) + "\n"


def read_drained(path: Path) -> frozenset[str]:
    """The node names recorded as drained; a missing file: none. Only names are
    read (a line is a name or nothing): the file can never add a destination."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in lines
                     if _NODE_NAME.fullmatch(line.strip()))


def record_drained(path: Path, node: str, drained: bool) -> None:
    """Add (or remove) `node` in the record, atomically: a crash leaves the old
    record or the new one, never half of one."""
    if not _NODE_NAME.fullmatch(node):
        raise ValueError("not a node name")
    names = set(read_drained(path)) - {node}
    if drained:
        names.add(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("# nodes drained with `masking edge drain`; a restarted edge keeps them drained\n"
                       + "".join(f"{name}\n" for name in sorted(names)))
    os.replace(partial, path)


class EdgeInstance:
    """One running Kamailio in front of `nodes`, started and stopped by us."""

    def __init__(self, settings: Settings, nodes: list[Node]):
        if not shutil.which("kamailio"):
            raise EdgeNotInstalled("no kamailio on PATH: run scripts/bootstrap")
        self.settings = settings
        self.nodes = nodes
        self.dir = (settings.state_dir / "edge" / settings.asterisk.instance_name).resolve()
        self.process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.dir / "kamailio.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kamailio.pid"

    def render(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "kamailio.cfg"
        config.write_text(render_config(edge_values(self.settings, self.dir)))
        drained = read_drained(self.settings.edge_drained_path)
        (self.dir / "dispatcher.list").write_text(dispatcher_list(self.nodes, drained))
        return config

    def checked_command(self) -> list[str]:
        """Render the configuration, have Kamailio check it, and return the
        command that runs it in the foreground (-DD), logging to stderr (-E)."""
        config = self.render()
        check = subprocess.run(["kamailio", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise EdgeStartError(f"kamailio rejected {config}:\n{check.stderr[-3000:]}")
        return ["kamailio", "-f", str(config), "-P", str(self.pid_file), "-Y", str(self.dir), "-DD", "-E",
                "-m", "64", "-M", "8"]

    def start(self, timeout: float = 15.0) -> None:
        self.stop_stale()
        command = self.checked_command()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EdgeStartError(f"kamailio exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                asyncio.run(EdgeRpc.of(self.settings).call("core.version", timeout=0.5))
                return
            except EdgeUnavailable:
                time.sleep(0.1)
        raise EdgeStartError(f"the edge's RPC did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self.process = None

    def stop_stale(self) -> None:
        """Stop an edge of the same name left running by a killed run."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        except (OSError, ValueError):
            pass
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class _Reply(asyncio.DatagramProtocol):
    def __init__(self):
        self.answer: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class EdgeRpc:
    """Kamailio's RPC (the commands kamcmd sends) as JSON-RPC over UDP."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    @classmethod
    def of(cls, settings: Settings) -> "EdgeRpc":
        return cls(settings.edge.rpc_host, rpc_port(settings))

    async def call(self, method: str, *params: str | int, timeout: float = 2.0):
        loop = asyncio.get_running_loop()
        request = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode()
        try:
            transport, protocol = await loop.create_datagram_endpoint(_Reply, remote_addr=(self.host, self.port))
        except OSError as exc:
            raise EdgeUnavailable(f"edge RPC {self.host}:{self.port}: {exc}") from None
        try:
            transport.sendto(request)
            async with asyncio.timeout(timeout):
                reply = json.loads(await protocol.answer)
        except (OSError, TimeoutError, ValueError) as exc:
            raise EdgeUnavailable(f"edge RPC {self.host}:{self.port} did not answer: {type(exc).__name__}") from None
        finally:
            transport.close()
        if "error" in reply:
            raise EdgeUnavailable(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    async def nodes(self) -> list[NodeState]:
        """Every node and its state, as the edge sees it."""
        result = await self.call("dispatcher.list")
        states = []
        for record in (result or {}).get("RECORDS", []):
            for target in record.get("SET", {}).get("TARGETS", []):
                dest = target.get("DEST", {})
                attrs = dest.get("ATTRS", {})
                states.append(NodeState(attrs.get("DUID") or dest.get("URI", ""), dest.get("URI", ""),
                                        dest.get("FLAGS", "")))
        return states

    async def set_state(self, node: str, state: str) -> None:
        """`d` takes a node out (drain: no new calls, none probed), `a` puts it back."""
        await self.call("dispatcher.set_duid_state", state, NODE_GROUP, node)
