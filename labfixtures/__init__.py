"""labfixtures: real network labs (namespaces, TAP/veth, Open vSwitch, QEMU) for pytest.

    from labfixtures import Lab, HostSpec, PortSpec, VmNic

    with Lab.open() as lab:                   # outside pytest; in pytest, use the `lab` fixture
        sw0 = lab.switch("sw0")
        ...
"""

from labfixtures.errors import LabError
from labfixtures.lab.lab import Lab
from labfixtures.lab.switch import Switch
from labfixtures.lab.veth import HostSpec, VethHost
from labfixtures.lab.vm import VM
from labfixtures.lab.vmspec import VmNic
from labfixtures.net.ovs import PortSpec

__all__ = ["VM", "HostSpec", "Lab", "LabError", "PortSpec", "Switch", "VethHost", "VmNic"]
__version__ = "0.1.0"
