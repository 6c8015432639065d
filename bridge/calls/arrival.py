"""What the dialplan tells us about a new inbound call: the number the caller
dialed, as the trunk it came in on delivered it.

dialplan/extensions.conf hands every inbound call over with the same three
values, to Stasis() as arguments and to the FastAGI fallback as AGI arguments:
the Request-URI's user part (`${EXTEN}`), the PJSIP endpoint it arrived on
(the trunk) and the To header, URI-encoded because it may hold commas.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import unquote

from bridge.config import Settings
from bridge.numbering import dialed_number

AS_DELIVERED_LIMIT = 64  # characters of an unreadable dialed number kept in the call's row
_PJSIP_CHANNEL = re.compile(r"PJSIP/(?P<endpoint>.+)-[0-9a-f]{8}")


@dataclass(frozen=True)
class Arrival:
    virtual_number: str | None  # E.164; None when what was dialed reads as no number
    as_delivered: str  # what the trunk's rule read, as the carrier sent it
    trunk: str

    @property
    def row_number(self) -> str:
        """The call row's `virtual_number`: the number, or what was sent instead."""
        return self.virtual_number or self.as_delivered[:AS_DELIVERED_LIMIT]


def arrival(args: tuple[str, ...], channel_name: str, settings: Settings) -> Arrival:
    """Read the dialplan's (exten, trunk, To) arguments. A caller served late
    (after a restart) comes with the exten alone: the trunk is then in the
    channel's name and the number in the Request-URI."""
    exten = args[0] if args else ""
    trunk = args[1] if len(args) > 1 and args[1] else trunk_of(channel_name)
    to_header = unquote(args[2]) if len(args) > 2 else ""
    rule = settings.dialed_rule(trunk)
    if rule.source == "to" and not to_header:
        rule = replace(rule, source="ruri")
    number = dialed_number(exten, to_header, rule, settings.default_region)
    return Arrival(number, to_header if rule.source == "to" else exten, trunk)


def trunk_of(channel_name: str) -> str:
    """`PJSIP/carrier-in-0000002a` -> `carrier-in`."""
    match = _PJSIP_CHANNEL.fullmatch(channel_name or "")
    return match.group("endpoint") if match else ""
