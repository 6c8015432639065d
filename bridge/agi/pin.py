"""PIN entry over FastAGI: the fallback's way of collecting what a caller on a
shared number keys, with the same rules as the ARI path.

The dialogue itself (attempts, "wrong PIN", where a PIN leads) is
`bridge.calls.pin.ask_for_pin`; this only plays a prompt and reads digits with
AGI commands, in early media: STREAM FILE (interrupted by the first digit,
as the ARI path cuts its prompt short), then WAIT FOR DIGIT until the entry
is complete (`pin_entered`: the length, `#`, `*` to start again) or the digit
timeout passes.
"""
from __future__ import annotations

from bridge.calls.pin import Collect
from bridge.config import Settings
from bridge.sessions.pins import pin_entered

DTMF_DIGITS = "0123456789*#"


class CallerLeft(Exception):
    """The caller hung up (or the channel failed) while an AGI command ran."""


def agi_collect(request, settings: Settings) -> Collect:
    """A `Collect` for `ask_for_pin` that speaks AGI on `request`'s channel."""

    async def collect(prompt: str) -> str | None:
        try:
            keyed = await play_until_digit(request, prompt)
            digits, complete = "", False
            while not complete:
                if not keyed:
                    keyed = digit_of(await request.send_command(
                        f"WAIT FOR DIGIT {int(settings.pin_digit_timeout * 1000)}"))
                    if not keyed:
                        break  # no digit in time: the entry is what was keyed so far
                digits, complete = pin_entered(digits, keyed, settings.pin_length)
                keyed = ""
            return digits
        except CallerLeft:
            return None

    return collect


async def play_until_digit(request, prompt: str) -> str:
    """Play the prompt's sounds in turn until one is cut short by a digit; that digit, or ''."""
    for sound in filter(None, prompt.split("&")):
        digit = digit_of(await request.send_command(f'STREAM FILE {sound} "{DTMF_DIGITS}"'))
        if digit:
            return digit
    return ""


def digit_of(result: dict) -> str:
    """An AGI result as the digit it reports ('' for none); CallerLeft on a hangup."""
    if "error" in result:
        raise CallerLeft(result.get("msg", ""))
    code = result.get("result", ("0", ""))[0]
    if not code.lstrip("-").isdigit() or int(code) < 0:
        raise CallerLeft(code)
    return chr(int(code)) if int(code) else ""
