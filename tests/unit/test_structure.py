"""The package's shape, kept: every module small enough to hold in one's head.

The layers and the absence of import circles are checked by `lint-imports`
(contracts in setup.cfg), which `make test` runs before the tests.
"""
from __future__ import annotations

from pathlib import Path

import bridge

LIMIT = 400
PACKAGE = Path(bridge.__file__).parent


def test_no_module_in_bridge_is_over_400_lines():
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > LIMIT} == {}
