"""The labfixtures pytest plugin (entry point `pytest11`: labfixtures.pytest_plugin.plugin).

A thin layer over the library, in modules by what they do:

- `options`: the `--lab-*` command-line options;
- `hooks`: markers and their checks, SIGTERM, the start-up reaper, the report header,
  the failure report;
- `report`: what a failed test's report shows about its lab (state, OVS warnings and
  errors, each VM's command line, console and QEMU messages);
- `fixtures`: `lab_host`, `lab`, `switch`, `veth_host`, `tap`, `attached`, images;
- `labfile_fixtures`: `lab_file`, `lab_file_module`;
- `checkpoint_fixtures`: `lab_vm`, `booted_vm`, `vm_from_checkpoint`, `checkpoint_store`;
- `attach`: the `--lab-attach*` options read and checked once, at configure time;
- `htmlreport`: with pytest-html, the environment and each failed lab test's drawing,
  VM screens, frames (.pcap) and logs as extras; the same files under --lab-artifacts,
  named in the JUnit system-out as GitLab attachments;
- `stash`: the `config.stash` / `item.stash` keys the hooks and fixtures share.

Each worker of pytest-xdist opens one lab host (its own namespace and Open vSwitch) the
first time a test asks for a lab; every test gets a `lab` scope on it, undone after it.
"""

pytest_plugins = [
    "labfixtures.pytest_plugin.options",
    "labfixtures.pytest_plugin.hooks",
    "labfixtures.pytest_plugin.fixtures",
    "labfixtures.pytest_plugin.labfile_fixtures",
    "labfixtures.pytest_plugin.checkpoint_fixtures",
    "labfixtures.pytest_plugin.grading",
    "labfixtures.pytest_plugin.regress",
    "labfixtures.pytest_plugin.htmlreport",
]
