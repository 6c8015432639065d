"""PIN entry over FastAGI against a scripted channel: the AGI commands sent,
and the entry read from their results with the ARI path's rules."""
from __future__ import annotations

from bridge.agi.pin import agi_collect
from bridge.config import Settings

SETTINGS = Settings(pin_length=4, pin_digit_timeout=2.5)


class ScriptedChannel:
    """Answers each AGI command with the next scripted result, as panoramisk parses them."""

    def __init__(self, *results: dict):
        self.results = list(results)
        self.commands: list[str] = []

    async def send_command(self, command: str) -> dict:
        self.commands.append(command)
        return self.results.pop(0)


def digit(key: str) -> dict:
    return {"status_code": 200, "result": (str(ord(key)), "")}


NOTHING = {"status_code": 200, "result": ("0", "")}  # a sound played to its end; no digit in time
HANGUP = {"error": "AGIResultHangup", "msg": "User hungup during execution"}


async def test_the_first_digit_cuts_the_prompt_short_and_the_rest_are_waited_for():
    channel = ScriptedChannel(digit("1"), digit("2"), digit("3"), digit("4"))

    assert await agi_collect(channel, SETTINGS)("pin-bad&pin-request") == "1234"
    assert channel.commands == ['STREAM FILE pin-bad "0123456789*#"', "WAIT FOR DIGIT 2500",
                                "WAIT FOR DIGIT 2500", "WAIT FOR DIGIT 2500"]


async def test_each_sound_of_the_prompt_plays_in_turn_until_a_digit():
    channel = ScriptedChannel(NOTHING, digit("5"), digit("#"))

    assert await agi_collect(channel, SETTINGS)("pin-bad&pin-request") == "5"
    assert channel.commands[:2] == ['STREAM FILE pin-bad "0123456789*#"', 'STREAM FILE pin-request "0123456789*#"']


async def test_star_starts_the_entry_again_and_hash_ends_it():
    channel = ScriptedChannel(digit("9"), digit("*"), digit("1"), digit("2"), digit("#"))

    assert await agi_collect(channel, SETTINGS)("pin-request") == "12"


async def test_silence_after_the_prompt_is_an_empty_entry_and_a_pause_ends_a_short_one():
    assert await agi_collect(ScriptedChannel(NOTHING, NOTHING), SETTINGS)("pin-request") == ""
    assert await agi_collect(ScriptedChannel(digit("7"), NOTHING), SETTINGS)("pin-request") == "7"


async def test_a_caller_who_hangs_up_while_keying_is_none():
    assert await agi_collect(ScriptedChannel(digit("1"), HANGUP), SETTINGS)("pin-request") is None
    assert await agi_collect(ScriptedChannel({"status_code": 200, "result": ("-1", "")}), SETTINGS)("x") is None
