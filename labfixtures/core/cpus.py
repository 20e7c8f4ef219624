"""The CPUs a process's VMs may count on, when several processes share the host.

The pytest plugin sets LABFIXTURES_CPUS in each xdist worker (host CPUs / workers). A VM
with more vCPUs than its share has vCPU threads waiting for a core while another spins on
a lock the waiting one holds: the main job took 204 s with 2 vCPUs per debian VM on 2
workers, 2 cores (docs/host-facts.md). The images' default vCPU counts (guestimages) and
the guide machine's `-smp` (qemu/guidehost.py) both stay within this share.
"""

from __future__ import annotations

import os

#: set by the user, or by the pytest plugin in each xdist worker
CPU_SHARE_ENV = "LABFIXTURES_CPUS"


def cpu_share() -> int:
    """The CPUs a VM of this process may use: LABFIXTURES_CPUS, else the host's."""
    host = os.cpu_count() or 1
    try:
        share = int(os.environ.get(CPU_SHARE_ENV, host))
    except ValueError:
        share = host
    return max(1, min(share, host))
