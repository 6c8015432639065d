"""The virtual number a caller dialed, as each inbound trunk delivers it.

A carrier puts the dialed number in the Request-URI's user part or in the To
header (where the Request-URI carries its own routing), as a SIP or tel URI,
in E.164 with or without the '+', in national form, or behind a routing
prefix of its own. The trunk's rule (MASKING_DIALED_NUMBER_RULES) says where
to look, what to strip and which country national numbers belong to; what
comes out is E.164, as the pool stores it, or None for anything that reads
as no number (the caller then hears that the number is not in service).
"""
from __future__ import annotations

from bridge.config import DialedRule
from bridge.numbering.e164 import to_e164
from bridge.numbering.uris import uri_number


def dialed_number(request_user: str, to_header: str, rule: DialedRule, default_region: str) -> str | None:
    """The dialed number in E.164, read from the Request-URI's user part or
    from the To header as `rule` says; None when it is no number."""
    source = to_header if rule.source == "to" else request_user
    return to_e164(uri_number(source or "", rule.strip), rule.region or default_region)
