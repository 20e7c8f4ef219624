"""labfixtures: real network labs (namespaces, TAP/veth, Open vSwitch, QEMU) for pytest.

    from labfixtures import Lab, HostSpec, PortSpec, VmNic

    with Lab.open() as lab:                   # outside pytest; in pytest, use the `lab` fixture
        sw0 = lab.switch("sw0")
        ...
"""

from labfixtures.errors import LabError
from labfixtures.lab.lab import HostSpec, Lab, Switch, VethHost
from labfixtures.lab.vm import VM, VmNic
from labfixtures.net.ovs import PortSpec

__all__ = ["VM", "HostSpec", "Lab", "LabError", "PortSpec", "Switch", "VethHost", "VmNic"]
__version__ = "0.1.0"
