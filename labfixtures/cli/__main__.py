"""`python -m labfixtures.cli`: the same as `labctl`."""

import sys

from labfixtures.cli.main import main

sys.exit(main())
