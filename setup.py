"""Metadata lives in setup.cfg; this adds the one step it cannot say.

`dialplan/` (the Asterisk configuration templates and the project's sounds)
and `edge/` (the Kamailio edge's configuration) sit at the top of the
repository, where operators and other helpers edit them, outside the `bridge`
package. A wheel must still carry them, or `masking asterisk config` and
`masking edge serve` have nothing to render after `pip install`: the build
copies them into the package as `bridge/stack/dialplan/` and
`bridge/stack/edge/`. An editable install reads the checkout's directly.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent
SHIPPED = ("dialplan", "edge")


class BuildWithDialplan(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            for name in SHIPPED:
                target = Path(self.build_lib) / "bridge" / "stack" / name
                shutil.rmtree(target, ignore_errors=True)  # a template removed since the last build goes too
                shutil.copytree(TOP / name, target, ignore=shutil.ignore_patterns("*~", ".*"))


setup(cmdclass={"build_py": BuildWithDialplan})
