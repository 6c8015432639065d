"""Run Asterisk with the project's own configuration, one instance per stack.

Uses a system `asterisk` >= 20 when there is one, otherwise the Debian sid
root that `scripts/bootstrap` builds once with mmdebstrap and runs it under
chroot. Each instance gets its own directories (config, run, spool, logs), so
several can share one installation with different ports.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from bridge.config import ConfigError, Settings
from bridge.files import write_private
from bridge.stack import pjsip
from bridge.stack.nodes import entity_id
from bridge.stack.trunks import load_plan

ROOT_MARKER = ".masking-root-complete"
# Where distributions put Asterisk's modules: Debian's multiarch directory
# (any architecture), then the upstream and RPM defaults.
MODULE_DIR_PATTERNS = ("usr/lib/*/asterisk/modules", "usr/lib/asterisk/modules", "usr/lib64/asterisk/modules")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Every rendered file ends by including the operator's own file of the same
# name from etc/local/, which rendering never writes: additions there survive
# every update. Asterisk reads these two before it can include anything.
LOCAL_DIR = "local"
NO_INCLUDES = frozenset({"asterisk.conf", "modules.conf"})


def dialplan_dir() -> Path:
    """The templates: `MASKING_DIALPLAN_DIR`, else the copy a wheel carries
    (setup.py puts it in the package), else the checkout's `dialplan/`."""
    if os.environ.get("MASKING_DIALPLAN_DIR"):
        return Path(os.environ["MASKING_DIALPLAN_DIR"])
    packaged = Path(__file__).resolve().parent / "dialplan"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "dialplan"


DIALPLAN_DIR = dialplan_dir()


class TemplatesMissing(RuntimeError):
    """The dialplan/ templates are not where this installation looks for them."""


class ModuleDirNotFound(RuntimeError):
    """No directory of Asterisk modules under the root searched."""


class AsteriskNotInstalled(RuntimeError):
    """Neither a system Asterisk >= 20 nor the project's Asterisk root exists."""


class AsteriskStartError(RuntimeError):
    """Asterisk did not come up; the message carries the end of its console log."""


class AsteriskCliError(RuntimeError):
    """A CLI command did not run: nothing listens on the instance's control
    socket, Asterisk knows no such command, or it did not answer in time."""


@dataclass(frozen=True)
class AsteriskInstall:
    """Where Asterisk lives: `root` is `/` for a system install, else the chroot."""

    root: Path
    module_dir: str
    data_dir: str = "/usr/share/asterisk"

    @property
    def chrooted(self) -> bool:
        return self.root != Path("/")

    def command(self, *args: str) -> list[str]:
        base = ["chroot", str(self.root), "asterisk"] if self.chrooted else ["asterisk"]
        return base + list(args)

    def host_path(self, inner: str) -> Path:
        """The path on this machine of a path as Asterisk sees it."""
        return self.root / inner.lstrip("/") if self.chrooted else Path(inner)

    def resolved_host_path(self, inner: str) -> Path:
        """`host_path`, following symlinks as Asterisk would: inside the chroot
        an absolute link (Debian's sounds/en -> /etc/alternatives/...) points
        below the root, not at this machine's own /etc."""
        path = Path("/")
        parts = list(Path(inner).parts[1:])
        for _ in range(100):  # a bound on link chains
            if not parts:
                return self.host_path(str(path))
            candidate = path / parts.pop(0)
            host = self.host_path(str(candidate))
            if host.is_symlink():
                target = Path(os.readlink(host))
                parts = list((target if target.is_absolute() else candidate.parent / target).parts[1:]) + parts
                path = Path("/")
            else:
                path = candidate
        raise OSError(f"too many symbolic links under {inner}")


def system_asterisk_version() -> tuple[int, ...] | None:
    if not shutil.which("asterisk"):
        return None
    try:
        out = subprocess.run(["asterisk", "-V"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"Asterisk (\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else None


def find_module_dir(root: Path = Path("/")) -> str:
    """Asterisk's module directory as Asterisk sees it (below `root`), found
    by looking where distributions install it, whatever the architecture."""
    for pattern in MODULE_DIR_PATTERNS:
        found = sorted(p for p in root.glob(pattern) if any(p.glob("*.so")))
        if found:
            return "/" + str(found[0].relative_to(root))
    raise ModuleDirNotFound(f"no Asterisk modules under {root} (looked in {', '.join(MODULE_DIR_PATTERNS)})")


def find_install(root: Path) -> AsteriskInstall:
    version = system_asterisk_version()
    if version and version >= (20,):
        return AsteriskInstall(root=Path("/"), module_dir=find_module_dir())
    if (root / ROOT_MARKER).exists():
        return AsteriskInstall(root=root, module_dir=find_module_dir(root))
    raise AsteriskNotInstalled(
        f"no asterisk >= 20 on PATH and no Asterisk root at {root}; "
        "run scripts/bootstrap (as root) to build it"
    )


def render_templates(values: dict[str, str], template_dir: Path = DIALPLAN_DIR) -> dict[str, str]:
    """Fill `{{name}}` placeholders in every `*.conf`; an unknown name is an
    error, and so is a directory without templates (an install that lost them
    must not look like a successful render)."""
    templates = sorted(template_dir.glob("*.conf"))
    if not templates:
        raise TemplatesMissing(f"no Asterisk configuration templates (*.conf) in {template_dir}: "
                               "reinstall the package, or point MASKING_DIALPLAN_DIR at dialplan/")
    rendered = {}
    for path in templates:
        text = path.read_text()

        def fill(match: re.Match, _path=path) -> str:
            name = match.group(1)
            if name not in values:
                raise KeyError(f"{_path.name}: no value for placeholder {name!r}")
            return str(values[name])

        rendered[path.name] = _PLACEHOLDER.sub(fill, text)
    return rendered


def with_local_includes(rendered: dict[str, str]) -> dict[str, str]:
    """Each file plus `#tryinclude local/<name>` (a missing file is no error)."""
    return {name: text if name in NO_INCLUDES else f"{text.rstrip()}\n\n; The operator's own additions "
            f"(docs/carrier.md): never written by rendering.\n#tryinclude {LOCAL_DIR}/{name}\n"
            for name, text in rendered.items()}


def write_config(settings: Settings, install: AsteriskInstall, instance_dir: str, etc: Path,
                 replace_local: bool) -> None:
    """Render every template into `etc`, with the TLS files and the operator's
    local additions copied beside them. `replace_local`: etc/local/ is ours
    (an instance we run) and mirrors the local directory, rather than being
    left to whoever runs that Asterisk when there is no local directory."""
    etc.mkdir(parents=True, exist_ok=True)
    for name, text in with_local_includes(render_templates(template_values(settings, install, instance_dir))).items():
        write_private(etc / name, text)  # ari.conf, manager.conf and pjsip.conf hold secrets
    copy_tls_files(settings, etc / pjsip.TLS_DIR)
    copy_local_config(local_config_dir(settings), etc / LOCAL_DIR, replace_local)


def local_config_dir(settings: Settings) -> Path:
    configured = settings.asterisk.local_config_dir
    return configured if str(configured) not in ("", ".") else settings.state_dir / "asterisk-local"


def copy_tls_files(settings: Settings, target: Path) -> None:
    ast = settings.asterisk
    if not ast.sip_tls_port:
        return
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for kind, source, setting in (("cert", ast.tls_cert_file, "MASKING_TLS_CERT_FILE"),
                                  ("key", ast.tls_key_file, "MASKING_TLS_KEY_FILE"),
                                  ("ca", ast.tls_ca_file, "MASKING_TLS_CA_FILE")):
        if str(source) in ("", "."):
            continue
        destination = target / pjsip.TLS_FILES[kind]
        try:
            shutil.copyfile(source, destination)
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {source}: {exc.strerror}") from None
        destination.chmod(0o600)


def copy_local_config(source: Path, target: Path, replace: bool) -> None:
    if not source.is_dir() and not replace:
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        for conf in source.glob("*.conf"):
            shutil.copyfile(conf, target / conf.name)


def template_values(settings: Settings, install: AsteriskInstall, instance_dir: str) -> dict[str, str]:
    ast = settings.asterisk
    values = {k: str(v) for k, v in asdict(ast).items()}
    values.update(
        instance_dir=instance_dir,
        module_dir=install.module_dir,
        data_dir=install.data_dir,
        system_name=f"masking-{ast.instance_name}",
        entity_id=ast.entity_id or entity_id(ast.instance_name),
        ari_host=settings.ari_host,
        ari_port=str(settings.ari_port),
        ari_user=settings.ari_user,
        ari_password=settings.ari_password,
        ari_app=settings.ari_app,
        ami_host=settings.ami_host,
        ami_port=str(settings.ami_port),
        ami_user=settings.ami_user,
        ami_password=settings.ami_password,
        ami_permit="127.0.0.0/255.0.0.0" if settings.ami_host.startswith("127.") else "0.0.0.0/0.0.0.0",
        prompt_unavailable=settings.prompts.unavailable,
        agi_host=settings.agi_host,
        agi_port=str(settings.agi_port),
        agi_secret=settings.agi_secret,
        dial_timeout=str(settings.dial_timeout),
        outbound_endpoint=settings.outbound_endpoint,
        nat_options=pjsip.nat_options(settings),
        tls_transport=pjsip.tls_transport(settings, f"{instance_dir}/etc"),
        trunks=pjsip.trunks(load_plan(settings)),
    )
    return values


def install_sounds(sounds_dir: Path, source: Path = DIALPLAN_DIR / "sounds") -> None:
    """The project's own sounds (the recording notice) as `masking/<name>`."""
    copy_sounds(sounds_dir / "masking", source)


def copy_sounds(target: Path, source: Path = DIALPLAN_DIR / "sounds") -> int:
    """The project's sounds into `target` (Asterisk's `masking/`), rewriting
    only what differs; how many it holds."""
    sounds = sorted(source.glob("*.wav"))
    if not sounds:
        raise TemplatesMissing(f"no sounds (*.wav) in {source}: reinstall the package")
    target.mkdir(parents=True, exist_ok=True)
    for sound in sounds:
        if not (target / sound.name).exists() or (target / sound.name).read_bytes() != sound.read_bytes():
            shutil.copyfile(sound, target / sound.name)
    return len(sounds)


def cli_failure(returncode: int, output: str) -> str | None:
    """Why `asterisk -rx` ran nothing, from its exit code and words; None when it ran."""
    if "Unable to connect to remote asterisk" in output or (returncode != 0 and not output.strip()):
        return "not running"
    if re.search(r"^No such command", output, re.M):
        return "no such command"
    return None


class AsteriskInstance:
    """One running Asterisk with rendered configuration, started and stopped by us."""

    def __init__(self, settings: Settings, install: AsteriskInstall | None = None):
        self.settings = settings
        self.install = install or find_install(settings.asterisk.asterisk_root)
        name = settings.asterisk.instance_name
        if self.install.chrooted:
            self.inner_dir = f"/var/lib/masking-bridge/instances/{name}"
        else:
            self.inner_dir = str((settings.state_dir / "asterisk" / name).resolve())
        self.dir = self.install.host_path(self.inner_dir)
        self.process: subprocess.Popen | None = None

    @property
    def recording_spool(self) -> Path:
        return self.dir / "spool" / "recording"

    @property
    def console_log(self) -> Path:
        return self.dir / "log" / "console.log"

    def render(self) -> None:
        for sub in ("etc", "run", "log", "lib", "cache", "spool/recording", "spool/tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        write_config(self.settings, self.install, self.inner_dir, self.dir / "etc", replace_local=True)
        (self.dir / "etc").chmod(0o700)  # trunk, ARI and AMI passwords: for Asterisk (root here) alone
        install_sounds(self.install.resolved_host_path(self.install.data_dir + "/sounds/en"))

    def start(self, timeout: float = 30.0) -> None:
        self.stop_stale()
        self.render()
        log = open(self.console_log, "ab")
        self.process = subprocess.Popen(
            self.install.command("-C", f"{self.inner_dir}/etc/asterisk.conf", "-f", "-n", "-g"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AsteriskStartError(f"asterisk exited with {self.process.returncode}:\n{self.log_tail()}")
            # ARI answers as soon as the HTTP server binds, before the SIP
            # stack has loaded: only a fully booted Asterisk is ready.
            if self.ari_ping() and "fully booted" in self.cli("core waitfullybooted", timeout=timeout):
                return
            time.sleep(0.1)
        raise AsteriskStartError(f"ARI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def ari_ping(self) -> bool:
        s = self.settings
        token = base64.b64encode(f"{s.ari_user}:{s.ari_password}".encode()).decode()
        req = urllib.request.Request(f"{s.ari_url}/ari/asterisk/ping", headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(req, timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def cli(self, command: str, timeout: float = 10) -> str:
        """Run an Asterisk CLI command on this instance (`asterisk -rx`)."""
        out = subprocess.run(
            self.install.command("-C", f"{self.inner_dir}/etc/asterisk.conf", "-rx", command),
            capture_output=True, text=True, timeout=timeout,
        )
        return out.stdout

    def run_cli(self, command: str, timeout: float = 10) -> str:
        """`cli` for an operator: the output, or AsteriskCliError saying why there is none.
        `asterisk -rx` exits 0 for a command it does not know, so its words are read too."""
        try:
            out = subprocess.run(
                self.install.command("-C", f"{self.inner_dir}/etc/asterisk.conf", "-rx", command),
                capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise AsteriskCliError(f"Asterisk did not answer within {timeout:.0f} s") from None
        failure = cli_failure(out.returncode, out.stdout + out.stderr)
        if failure == "not running":
            raise AsteriskCliError(f"no Asterisk is running for instance {self.settings.asterisk.instance_name!r} "
                                   f"(control socket {self.dir / 'run' / 'asterisk.ctl'}): is `masking run` going?")
        if failure == "no such command":
            raise AsteriskCliError(f"Asterisk has no command {command!r} ('core show help' lists them)")
        return out.stdout

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.cli("core stop now", timeout=timeout)
                self.process.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self.process = None

    def stop_stale(self) -> None:
        """Stop an instance of the same name left running by a killed run."""
        pid_file = self.dir / "run" / "asterisk.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
        pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"
