"""Numbers on the way out: nothing that leaves the process (logs, errors,
metric labels) may carry a number in clear. `mask_number` is the one form
allowed there, and `redact_text` is the net under everything else."""
from __future__ import annotations

import re


def mask_number(number: str) -> str:
    """`+6591234567` -> `+65****4567`: enough to tell calls apart, not to dial."""
    digits = re.sub(r"\D", "", number or "")
    if len(digits) < 7:
        return "****"
    prefix = "+" if number.strip().startswith("+") else ""
    return f"{prefix}{digits[:2]}****{digits[-4:]}"


# A '+' followed by digits (separators allowed) is a number whatever its length.
_PLUS_NUMBER = re.compile(r"\+\d[\d\s().-]{5,20}\d")
# A bare run of 7 to 15 digits standing alone: also inside a SIP URI or a dial
# string (`sip:6591234567@`, `PJSIP/6591234567@`), but not inside an identifier
# (UUID segments), or a decimal such as Asterisk's `1764043000.12` unique ids.
_BARE_NUMBER = re.compile(r"(?<![\w.-])\d{7,15}(?![\w.-])")


def redact_text(text: str) -> str:
    """Mask every number-like substring of `text`."""
    text = _PLUS_NUMBER.sub(lambda m: mask_number(m.group(0)), text)
    return _BARE_NUMBER.sub(lambda m: mask_number(m.group(0)), text)
