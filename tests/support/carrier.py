"""SIPp playing a carrier: from an address of its own (127.0.0.x), over UDP
or TLS, and the certificates a TLS trunk needs.

Debian 12's SIPp has no TLS; `scripts/bootstrap` builds a small sid root whose
SIPp has, and it runs here through that root's own loader so that it reads
this machine's scenario files and writes its logs where the tests look.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import os
import re
import socket
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from tests.support.rtp import ALAW, PACKET_OUTGOING, ULAW, RtpSniffer
from tests.support.sipp import Sipp, SippResult

SIPP_TLS_ROOT = Path(os.environ.get("MASKING_SIPP_TLS_ROOT", "/var/cache/masking-bridge/sipp-sid"))


def tls_sipp_command() -> list[str]:
    """The command that runs the TLS-capable SIPp; FileNotFoundError when bootstrap has not built it."""
    binary = SIPP_TLS_ROOT / "usr/bin/sipp"
    loader = SIPP_TLS_ROOT / "usr/lib64/ld-linux-x86-64.so.2"
    if not binary.exists() or not loader.exists():
        raise FileNotFoundError(f"no TLS-capable SIPp at {SIPP_TLS_ROOT}: run scripts/bootstrap")
    return [str(loader), "--library-path", str(SIPP_TLS_ROOT / "usr/lib/x86_64-linux-gnu"), str(binary)]


class CarrierSipp(Sipp):
    """A SIPp whose packets come from `address`; with `tls`, over TLS (`-t l1`)."""

    def __init__(self, workdir: Path, scenario: Path, args: list[str], name: str, address: str,
                 port: int | None = None, tls: tuple[Path, Path] | None = None):
        super().__init__(workdir, scenario, args, name, port)
        self.command[self.command.index("-i") + 1] = address
        if tls:
            cert, key = tls
            self.command[:1] = tls_sipp_command()
            self.command += ["-t", "l1", "-tls_cert", str(cert), "-tls_key", str(key)]


    def wait(self, timeout: float) -> SippResult:
        """As Sipp's, with SIPp 3.8's ISO timestamps in the message log
        written as 3.6 writes them, which SippResult reads."""
        result = super().wait(timeout)
        result.messages = re.sub(r"^(-{10,} \d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d\.\d+)Z", r"\1 \2",
                                 result.messages, flags=re.M)
        return result


def make_certificate(directory: Path, address: str = "127.0.0.1", days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate for `address` and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "masking-bridge test carrier")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class PacketSniffer(RtpSniffer):
    """An RtpSniffer (packets, level) that also keeps each RTP packet whole:
    an SRTP payload means nothing until decrypted."""

    def __init__(self, port: int):
        super().__init__(port)
        self.raw: list[bytes] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                continue
            if address[2] == PACKET_OUTGOING or struct.unpack_from("!H", frame, 12)[0] != 0x0800:
                continue
            udp = 14 + (frame[14] & 0x0F) * 4
            if frame[14 + 9] != 17 or struct.unpack_from("!H", frame, udp + 2)[0] != self.port:
                continue
            rtp = frame[udp + 8:]
            if len(rtp) <= 12 or rtp[0] >> 6 != 2:
                continue
            self.raw.append(rtp)
            self.payload_types.append(rtp[1] & 0x7F)
            self.arrivals.append(datetime.datetime.now())
            table = ALAW if rtp[1] & 0x7F == 8 else ULAW if rtp[1] & 0x7F == 0 else None
            if table is not None:  # as plain RTP; SRTP needs decrypting first
                self.samples.extend(table[b] for b in rtp[12 + 4 * (rtp[0] & 0x0F):])


class SrtpSession:
    """Receives SRTP protected with AES_CM_128_HMAC_SHA1_80 under an SDES
    `inline:` key (RFC 3711, 4568): checks each packet's tag and decrypts it.
    A packet whose tag verifies was protected with exactly this key."""

    def __init__(self, inline_key: str):
        material = base64.b64decode(inline_key)
        master_key, master_salt = material[:16], material[16:30]
        self.cipher_key = self._derive(master_key, master_salt, 0, 16)
        self.auth_key = self._derive(master_key, master_salt, 1, 20)
        self.salt = self._derive(master_key, master_salt, 2, 14)

    @staticmethod
    def _derive(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
        x = int.from_bytes(master_salt, "big") ^ (label << 48)
        encryptor = Cipher(algorithms.AES(master_key), modes.CTR((x << 16).to_bytes(16, "big"))).encryptor()
        return encryptor.update(b"\0" * length)

    def decrypt(self, packet: bytes, rollover: int = 0) -> bytes | None:
        """The G.711 payload, or None when the tag does not verify."""
        protected, tag = packet[:-10], packet[-10:]
        expected = hmac.new(self.auth_key, protected + rollover.to_bytes(4, "big"), hashlib.sha1).digest()[:10]
        if not hmac.compare_digest(tag, expected):
            return None
        header = 12 + 4 * (packet[0] & 0x0F)
        sequence, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        index = (rollover << 16) | sequence
        iv = (int.from_bytes(self.salt, "big") << 16) ^ (ssrc << 64) ^ (index << 16)
        decryptor = Cipher(algorithms.AES(self.cipher_key), modes.CTR(iv.to_bytes(16, "big"))).decryptor()
        return decryptor.update(protected[header:])
