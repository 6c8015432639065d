"""Run SIPp scenarios from tests/sipp/ and read what they saw."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.support.ports import free_port

SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
PCAP_DIR = Path("/usr/share/sip-tester")


@dataclass(frozen=True)
class SipMessage:
    """One SIP message SIPp logged, when, and whether it received or sent it."""

    at: datetime
    received: bool
    text: str

    @property
    def call_id(self) -> str:
        match = re.search(r"^(?:Call-ID|i):\s*(\S+)", self.text, re.M | re.I)
        return match.group(1) if match else ""


@dataclass
class SippResult:
    returncode: int
    messages: str  # every SIP message sent and received (-trace_msg)
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0

    def log(self) -> list[SipMessage]:
        """Every message sent and received, in order."""
        logged = []
        for block in re.split(r"^-{10,} ", self.messages, flags=re.M)[1:]:
            stamp, _, rest = block.partition("\n")
            heading, _, text = rest.partition("\n")
            logged.append(SipMessage(datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f"),
                                     "message received" in heading, text.strip()))
        return logged

    def first(self, direction: str, start_line: str) -> datetime:
        """When the first message sent or received that starts with `start_line` went."""
        return next(m.at for m in self.log() if m.received == (direction == "received") and m.text.startswith(start_line))

    def received(self) -> list[str]:
        """The SIP messages this endpoint received, one string each."""
        messages = []
        for block in re.split(r"^-{10,} [^\n]*\n", self.messages, flags=re.M):
            first, _, body = block.partition("\n")
            if "message received" in first:
                messages.append(body.strip())
        return messages


def render(scenario: str, workdir: Path, **values: str) -> Path:
    """Copy a scenario into `workdir`, filling `{{name}}` placeholders."""
    text = (SCENARIOS / scenario).read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", str(value))
    if "{{" in text:
        raise ValueError(f"{scenario}: unfilled placeholder in {re.findall(r'{{.*?}}', text)}")
    path = workdir / f"{values.get('tag', '')}{scenario}"
    path.write_text(text)
    pcap = workdir / "pcap"
    pcap.mkdir(exist_ok=True)
    for audio in ("g711a.pcap", *(p.name for p in PCAP_DIR.glob("dtmf_2833_*.pcap"))):
        if not (pcap / audio).exists():
            (pcap / audio).symlink_to(PCAP_DIR / audio)
    return path


class Sipp:
    """One SIPp process; UAS ones run in the background while the UAC calls."""

    def __init__(self, workdir: Path, scenario: Path, args: list[str], name: str, port: int | None = None):
        self.workdir = workdir
        self.message_file = workdir / f"{name}.msg"
        self.output_file = workdir / f"{name}.out"
        self.port = port or free_port()
        self.media_port = free_port()
        self.command = [
            "sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(self.port), "-mp", str(self.media_port),
            "-m", "1", "-nostdin", "-trace_msg", "-message_file", str(self.message_file),
            "-trace_err", "-error_file", str(workdir / f"{name}.err"), *args,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> "Sipp":
        self.message_file.unlink(missing_ok=True)
        with open(self.output_file, "wb") as out:
            self.process = subprocess.Popen(self.command, cwd=self.workdir, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def wait(self, timeout: float) -> SippResult:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return SippResult(
            returncode=code,
            messages=self.message_file.read_text(errors="replace") if self.message_file.exists() else "",
            output=self.output_file.read_text(errors="replace"),
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
