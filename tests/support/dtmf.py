"""RFC 2833 / RFC 4733 digit strings for SIPp, built from the one-digit
captures that ship with SIPp (/usr/share/sip-tester/dtmf_2833_*.pcap).

SIPp's `play_pcap_audio` replays one capture as it was recorded. A PIN is
several digits, so this writes one capture holding them all, `gap` seconds
apart, with RTP sequence numbers running on and each digit its own RTP
timestamp: a receiver treats two events with the same timestamp as one, so
played one after the other the stock files would turn "11" into "1".
"""
from __future__ import annotations

import struct
from pathlib import Path

from tests.support.sipp import PCAP_DIR

NAMES = {**{str(d): str(d) for d in range(10)}, "#": "pound", "*": "star"}
_IP_UDP_END = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers before RTP


def _packets(digit: str) -> tuple[bytes, list[tuple[float, bytes]]]:
    data = (PCAP_DIR / f"dtmf_2833_{NAMES[digit]}.pcap").read_bytes()
    header, offset, packets = data[:24], 24, []
    while offset < len(data):
        seconds, micros, length, _ = struct.unpack("<IIII", data[offset:offset + 16])
        packets.append((seconds + micros / 1e6, data[offset + 16:offset + 16 + length]))
        offset += 16 + length
    return header, packets


def dtmf_pcap(digits: str, path: Path, gap: float = 0.4) -> Path:
    """Write a capture that sends `digits` (0-9, #, *) to `path`."""
    out, seq, header = [], 1000, b""
    for index, digit in enumerate(digits):
        header, packets = _packets(digit)
        first = packets[0][0]
        for when, frame in packets:
            at = 1.0 + index * gap + (when - first)
            rtp = bytearray(frame[_IP_UDP_END:])
            struct.pack_into(">HI", rtp, 2, seq & 0xFFFF, 16000 + index * 8000)
            seq += 1
            udp = bytearray(frame[34:_IP_UDP_END])
            struct.pack_into(">H", udp, 6, 0)  # no UDP checksum: the payload changed
            packet = frame[:34] + bytes(udp) + bytes(rtp)
            out.append(struct.pack("<IIII", int(at), int((at % 1) * 1e6), len(packet), len(packet)) + packet)
    path.write_bytes(header + b"".join(out))
    return path


def info_messages(digits: str, gap_ms: int = 300) -> str:
    """SIPp steps sending `digits` as SIP INFO (application/dtmf-relay) in
    the early dialog, each answered 200 before the next, for
    tests/sipp/uac_pin_info.xml. Between digits the caller waits `gap_ms`
    in a receive that also takes the 183s Asterisk repeats as prompts start
    (a plain <pause> would abort the call on one)."""
    steps = []
    for index, digit in enumerate(digits):
        steps.append(f"""  <send retrans="500" start_txn="info{index}">
    <![CDATA[
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {index + 2} INFO
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="183" optional="true"/>
  <recv response="200" response_txn="info{index}"/>
  <recv response="183" timeout="{gap_ms}" ontimeout="keyed{index}"/>
  <label id="keyed{index}"/>""")
    return "\n".join(steps)
