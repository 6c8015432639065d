""".env.example is the operator's list of settings: complete, commented, and
readable by both of its readers (`make run` sources it with bash; docker
compose parses it as dotenv), with the same values in each."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bridge.config import Settings, settings_by_name

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
# Read by docker-compose.yml, not by the bridge.
COMPOSE_ONLY = {"POSTGRES_PORT", "POSTGRES_PASSWORD", "BASE_IMAGE_BOOKWORM", "BASE_IMAGE_SID"}
ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
# Characters bash and dotenv read alike without quotes.
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:@,+=%-]*")
QUOTED_VALUE = re.compile(r"'([^'\\]*)'")


def assignments() -> list[tuple[int, str, str]]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    found = []
    for index, line in enumerate(lines):
        match = ASSIGNMENT.match(line)
        if match:
            found.append((index, match.group(1), match.group(2)))
        else:
            assert line == "" or line.startswith("#"), f"line {index + 1} is neither a setting nor a comment: {line!r}"
    return found


def written_value(raw: str) -> str:
    quoted = QUOTED_VALUE.fullmatch(raw)
    return quoted.group(1) if quoted else raw


def test_every_setting_the_bridge_reads_is_in_env_example_and_nothing_else():
    names = [name for _, name, _ in assignments()]
    known = set(settings_by_name(Settings()))
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert sorted(known - set(names)) == [], "settings missing from .env.example"
    assert sorted(set(names) - known - COMPOSE_ONLY) == [], "names in .env.example that no code reads"


def test_every_setting_has_a_comment_in_its_block():
    """Each assignment has a comment above it in its paragraph (a block of
    related settings may share one)."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, name, _ in assignments():
        above = index - 1
        while above >= 0 and ASSIGNMENT.match(lines[above]):
            above -= 1
        assert above >= 0 and lines[above].startswith("#"), f"{name} has no comment above it"


def test_a_value_with_shell_characters_is_single_quoted():
    for _, name, raw in assignments():
        assert PLAIN_VALUE.fullmatch(raw) or QUOTED_VALUE.fullmatch(raw), \
            f"{name}={raw}: quote it in single quotes (bash would run part of it as a command)"


def test_bash_sourcing_gives_every_value_as_written_and_prints_nothing(tmp_path):
    """What `make run` does (`set -a; . ./.env`): no `command not found`, no
    setting dropped (the unquoted `confbridge-pin-bad&vm-goodbye` did both)."""
    script = f"set -a; . {ENV_EXAMPLE}; set +a; env -0"
    result = subprocess.run(["bash", "-c", script], capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert result.returncode == 0 and result.stderr == b""
    sourced = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    for _, name, raw in assignments():
        assert sourced.get(name) == written_value(raw), name


def test_the_example_loads_as_valid_settings_with_the_pin_failed_prompt_intact():
    env = {name: written_value(raw) for _, name, raw in assignments()}
    settings = Settings.from_env(env)
    assert settings.prompts.pin_failed == "confbridge-pin-bad&vm-goodbye"
    assert settings.notice.opt_out_digit == "9"
