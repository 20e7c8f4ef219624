"""What the plugin keeps between hooks and fixtures: `config.stash` and `item.stash` keys
(pytest's typed store), never module globals or attributes set on the config."""

from __future__ import annotations

import pytest

from labfixtures.lab.lab import Lab
from labfixtures.pytest_plugin.attach import AttachPlan

#: config.stash: this process's lab host, once a test asked for one
LAB_HOST = pytest.StashKey[Lab]()
#: item.stash: the lab scope of one test (what its failure report describes)
TEST_LAB = pytest.StashKey[Lab]()
#: config.stash: what the start-up reaper removed (shown in the report header)
REAPED = pytest.StashKey[list[str]]()
#: config.stash: the --lab-attach* targets, read and checked at configure time
ATTACH = pytest.StashKey[AttachPlan]()
