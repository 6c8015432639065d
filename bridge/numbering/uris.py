"""The number in a SIP or tel URI, as carriers write them in a Request-URI or a To header.

    "Shop" <sip:+65-6000-0001@carrier.example;user=phone>;tag=1  -> +65-6000-0001
    <tel:6000-0001;phone-context=+65>                              -> +656000-0001
    sip:%2B6560000001;npdi;rn=+6599990000@carrier.example          -> +6560000001
    6560000001;npdi                 (a Request-URI user part alone)   -> 6560000001

Only text is taken apart here: whether it is a number is `to_e164`'s to say.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

_IN_BRACKETS = re.compile(r"<([^>]*)>")
_SCHEME = re.compile(r"^(sips?|tel):", re.I)
_GLOBAL_CONTEXT = re.compile(r"\+[\d().-]+")


def uri_number(text: str, strip: str = "") -> str:
    """The number a URI, a header holding one, or a bare user part carries
    ('' if none), with the carrier's `strip` prefix removed. A local tel
    number whose phone-context is a global prefix (`;phone-context=+65`) is
    returned with that prefix in front, as RFC 3966 reads it."""
    text = text.strip()
    bracketed = _IN_BRACKETS.search(text)
    uri = bracketed.group(1).strip() if bracketed else text
    scheme = _SCHEME.match(uri)
    rest = uri[scheme.end():] if scheme else uri
    if scheme and scheme.group(1).lower() != "tel":
        if "@" not in rest:
            return ""  # sip:host: a URI with no user part
        rest = rest.rsplit("@", 1)[0]
    elif "@" in rest:
        rest = rest.rsplit("@", 1)[0]  # a user part Asterisk passed with its host
    number, *params = unquote(rest).split(";")
    number = number.strip()
    if strip and number.startswith(strip):
        number = number[len(strip):]
    context = next((p.split("=", 1)[1].strip() for p in params if p.lower().startswith("phone-context=")), "")
    if context and not number.startswith("+") and _GLOBAL_CONTEXT.fullmatch(context):
        number = context + number
    return number
