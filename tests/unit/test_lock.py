"""constraints.txt locks every dependency setup.cfg declares, at a version
inside setup.cfg's range: a dependency added without `make lock` would install
at whatever version the day brings, and a floor raised without it would not
be met by the lock."""
from __future__ import annotations

import configparser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def declared() -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines() + config["options.extras_require"]["test"].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def locked() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_dependency_is_locked_within_its_range():
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt has {requirement.name}=={pins[name]}, outside {requirement.specifier}: run `make lock`"


def test_the_lock_does_not_pin_this_package_itself():
    assert canonicalize_name("masking-bridge") not in locked()
