"""What a SIP endpoint actually received on the wire: RTP sniffed on loopback.

SIPp cannot tell us what audio it got, so the tests read the packets arriving
at its media port with an AF_PACKET socket (root only, as CI runs) and decode
the G.711 payload to measure whether it carried sound or silence.
"""
from __future__ import annotations

import math
import socket
import struct
import threading
from datetime import datetime

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def _alaw_to_linear(byte: int) -> int:
    byte ^= 0x55
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    value = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return value if sign else -value


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    value = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -value if sign else value


ALAW = [_alaw_to_linear(b) for b in range(256)]
ULAW = [_ulaw_to_linear(b) for b in range(256)]


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


class RtpSniffer:
    """Collects the RTP packets sent to `port` on loopback while running (or,
    with `from_port`, the packets sent from it: what an endpoint sent)."""

    def __init__(self, port: int, from_port: bool = False):
        self.port = port
        self._port_offset = 0 if from_port else 2  # UDP source or destination port
        self.payload_types: list[int] = []
        self.samples: list[int] = []
        self.arrivals: list[datetime] = []  # local wall clock, comparable with SIPp's message log
        self.sounds: list[tuple[datetime, float, list[int]]] = []  # (arrival, level, samples) per G.711 packet
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RtpSniffer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    @property
    def packets(self) -> int:
        return len(self.payload_types)

    @property
    def level(self) -> float:
        return rms(self.samples)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                continue
            if address[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8 + 12:
                continue  # loopback shows each packet twice; keep the received copy
            if struct.unpack_from("!H", frame, 12)[0] != 0x0800:
                continue
            ihl = (frame[14] & 0x0F) * 4
            if frame[14 + 9] != 17:  # UDP
                continue
            udp = 14 + ihl
            if struct.unpack_from("!H", frame, udp + self._port_offset)[0] != self.port:
                continue
            rtp = frame[udp + 8:]
            if rtp[0] >> 6 != 2:
                continue
            payload_type = rtp[1] & 0x7F
            self.payload_types.append(payload_type)
            self.arrivals.append(datetime.now())
            table = ALAW if payload_type == 8 else ULAW if payload_type == 0 else None
            if table is not None:
                header = 12 + 4 * (rtp[0] & 0x0F)
                samples = [table[b] for b in rtp[header:]]
                self.samples.extend(samples)
                self.sounds.append((self.arrivals[-1], rms(samples), samples))

    def audio_between(self, start: datetime, end: datetime, level: float = 100) -> int:
        """How many packets carrying sound (not silence) arrived between two wall-clock times."""
        return sum(1 for at, packet_level, _ in self.sounds if start <= at <= end and packet_level > level)

    def pitch(self, level: float = 100, between: tuple[datetime, datetime] | None = None) -> float:
        """Zero crossings per second of the packets carrying sound (arrived
        `between` two wall-clock times, if given): twice the frequency of a
        pure tone (tells a 1 kHz clip from a 425 Hz ringback)."""
        loud = [samples for at, packet_level, samples in self.sounds
                if packet_level > level and (between is None or between[0] <= at <= between[1])]
        crossings = sum(sum(1 for a, b in zip(p, p[1:]) if (a < 0) != (b < 0)) for p in loud)
        return crossings / (sum(len(p) for p in loud) / 8000) if loud else 0.0

    def tone_packets(self, hz: float, between: tuple[datetime, datetime], level: float = 100,
                     tolerance: float = 0.1) -> int:
        """How many packets carrying a pure tone of `hz` arrived between two
        wall-clock times: each packet's own zero crossings, so a prompt is
        told from the ringback or wait audio around it packet by packet."""
        def pitch(samples: list[int]) -> float:
            crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
            return crossings * 8000 / len(samples) / 2

        return sum(1 for at, packet_level, samples in self.sounds
                   if between[0] <= at <= between[1] and packet_level > level
                   and abs(pitch(samples) - hz) <= hz * tolerance)

    def last_arrival(self, payload_type: int) -> datetime | None:
        """When the last packet of `payload_type` passed (101: a DTMF event)."""
        return max((at for at, pt in zip(self.arrivals, self.payload_types) if pt == payload_type), default=None)
