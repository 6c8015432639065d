"""Phone numbers: validated to E.164 on the way in, masked on the way out.

`e164` reads numbers (strictly from people and the API, leniently from
carriers' signalling), `uris` finds the number in a SIP or tel URI, `dialed`
reads the number a caller dialed as the inbound trunk delivers it, and
`masking` keeps numbers out of everything that leaves the process.
"""
from bridge.numbering.dialed import dialed_number
from bridge.numbering.e164 import InvalidNumber, parse_e164, to_e164
from bridge.numbering.masking import mask_number, redact_text
from bridge.numbering.uris import uri_number

__all__ = ["InvalidNumber", "dialed_number", "mask_number", "parse_e164", "redact_text", "to_e164", "uri_number"]
