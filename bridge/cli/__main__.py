"""`python -m bridge.cli`: how the tests and the stack start the service, as the installed `masking` would."""
import sys

from bridge.cli import main

sys.exit(main())
