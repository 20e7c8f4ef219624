"""labfixtures: real network labs (namespaces, TAP/veth, Open vSwitch, QEMU) for pytest.

    from labfixtures import Lab, HostSpec, PortSpec, VmNic

    with Lab.open() as lab:                   # outside pytest; in pytest, use the `lab` fixture
        sw0 = lab.switch("sw0")
        ...
"""

from .errors import LabError
from .lab import HostSpec, Lab, Switch, VethHost
from .ovs import PortSpec
from .vm import VM, VmNic

__all__ = ["VM", "HostSpec", "Lab", "LabError", "PortSpec", "Switch", "VethHost", "VmNic"]
__version__ = "0.1.0"
