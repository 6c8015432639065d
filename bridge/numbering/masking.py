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
# Digits as people write a number at home: one run of 7 to 15 digits, or groups
# split by a space or a hyphen, with an area code in parentheses anywhere
# (`9123 4567`, `91-23-45-67`, `(65) 9123-4567`, `8 (912) 345-67-89`); also
# inside a SIP URI or a dial string (`sip:6591234567@`, `PJSIP/6591234567@`).
# Never inside an identifier or a decimal (UUID segments, `ORD-2024-000123`,
# Asterisk's `1764043000.12`), nor after `#` or a currency sign.
_SEP = r"[ \t\u00a0-]"
_LOCAL_NUMBER = re.compile(
    r"(?<![\w.#$\u20ac\u00a3\u00a5-])"
    rf"(?:\(\d{{1,5}}\){_SEP}?)?\d{{1,15}}"
    rf"(?:(?:{_SEP}|[ \u00a0]?\(\d{{1,5}}\){_SEP}?)\d{{2,15}}){{0,7}}"
    r"(?![\w-]|[.:]\d)")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})|(\d{2})-(\d{2})-(\d{4})")
_RANGE = re.compile(r"(\d{5,})-(\d{5,})")  # 10000-10999: ports, ids; never a number's grouping
_CURRENCY = r"[$\u20ac\u00a3\u00a5]|\b(?:S\$|US\$|SGD|USD|EUR|GBP|MYR|RM|IDR|INR|Rs\.?|JPY|CNY|RMB|AUD|HKD)"
_AMOUNT_BEFORE = re.compile(rf"(?:{_CURRENCY})\s*$", re.IGNORECASE)
_AMOUNT_AFTER = re.compile(rf"^\s*(?:{_CURRENCY})\b", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Mask every number-like substring of `text`: an international number in
    any spelling, and the local formats above; dates, ranges and amounts stay."""
    text = _PLUS_NUMBER.sub(lambda m: mask_number(m.group(0)), text)
    return _LOCAL_NUMBER.sub(_mask_local, text)


def _mask_local(match: re.Match) -> str:
    found = match.group(0)
    if not 7 <= sum(map(str.isdigit, found)) <= 15 or _not_a_number(found):
        return found
    before, after = match.string[max(0, match.start() - 8):match.start()], match.string[match.end():match.end() + 8]
    if _AMOUNT_BEFORE.search(before) or _AMOUNT_AFTER.match(after):
        return found
    return mask_number(found)


def _not_a_number(found: str) -> bool:
    """A date (2026-11-25, 25-11-2026) or an ascending range of equal-width values."""
    date = _DATE.fullmatch(found)
    if date:
        year, month, day = date.group(1, 2, 3) if date.group(1) else date.group(6, 5, 4)
        if 1 <= int(month) <= 12 and 1 <= int(day) <= 31 or 1 <= int(day) <= 12 and 1 <= int(month) <= 31:
            return True
    span = _RANGE.fullmatch(found)
    return bool(span) and len(span.group(1)) == len(span.group(2)) and span.group(1) < span.group(2)
