"""Register the labfixtures plugin for runs from this checkout.

When the package is installed (`pip install -e .`), pytest already loads the plugin
through its `pytest11` entry point; registering it twice would be an error.
"""

from importlib.metadata import entry_points

_installed = any(ep.value.startswith("labfixtures") for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _installed else ["labfixtures.pytest_plugin.plugin"]
