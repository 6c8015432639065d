"""Metadata lives in setup.cfg; this adds the one step it cannot say.

`dialplan/` (the Asterisk configuration templates and the project's sounds)
sits at the top of the repository, where operators and other helpers edit it,
outside the `bridge` package. A wheel must still carry it, or `masking asterisk
config` has nothing to render after `pip install`: the build copies it into the
package as `bridge/stack/dialplan/`. An editable install reads the checkout's
`dialplan/` directly (bridge/stack/templates.py).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DIALPLAN = Path(__file__).resolve().parent / "dialplan"


class BuildWithDialplan(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "bridge" / "stack" / "dialplan"
            shutil.rmtree(target, ignore_errors=True)  # a template removed since the last build goes too
            shutil.copytree(DIALPLAN, target,
                            ignore=shutil.ignore_patterns("*~", ".*"))


setup(cmdclass={"build_py": BuildWithDialplan})
