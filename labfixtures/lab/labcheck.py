"""The checks of a lab file's values: each mistake names the file, the key and the fix.

`Checker` walks the YAML tree (labfile.parse), collecting every mistake so that all are
reported at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from labfixtures.errors import LabError, LabFileError
from labfixtures.guestimages import kernels
from labfixtures.lab.labspec import PortDef


class Checker:
    """Walks the YAML tree, keeping the dotted key path for error messages."""

    #: a file with more mistakes than this is reported with the first ones only
    MAX_MISTAKES = 20

    def __init__(self, source: str) -> None:
        self.source = source
        self.mistakes: list[LabFileError] = []

    def fail(self, key: str, problem: str, fix: str) -> LabFileError:
        return LabFileError(self.source, key, problem, fix)

    @contextmanager
    def each(self) -> Iterator[None]:
        """Validate one item; a mistake in it is kept and the walk goes on with the next."""
        try:
            yield
        except LabFileError as e:
            self.mistakes.extend(e.mistakes)
            if len(self.mistakes) >= self.MAX_MISTAKES:
                raise LabFileError.several(self.mistakes) from None

    def done(self, since: int = 0) -> None:
        """Raise the mistakes found since mark SINCE (a length of `mistakes`), if any."""
        if len(self.mistakes) > since:
            found = self.mistakes[since:]
            del self.mistakes[since:]
            raise LabFileError.several(found)

    def mapping(self, value: Any, key: str, allowed: set[str],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__} {value!r}",
                            f"write `{key.rsplit('.', 1)[-1]}:` followed by indented keys")
        prefix = "" if key == "(top)" else f"{key}."
        found = []
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
                hint = f"did you mean `{close[0]}`?" if close else \
                    f"allowed keys: {', '.join(sorted(allowed))}"
                found.append(self.fail(f"{prefix}{k}", "unknown key", hint))
        for k in required:
            if k not in value:
                where = "at the top of the file" if key == "(top)" else f"under `{key}`"
                found.append(self.fail(f"{prefix}{k}", "missing", f"add `{k}:` {where}"))
        if found:
            raise LabFileError.several(found)
        return value

    def list_(self, value: Any, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {value!r}",
                            f"write each item on its own line starting with `- ` under {key}")
        return value

    def int_(self, value: Any, key: str, lo: int, hi: int, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"{value!r} is not a whole number", f"give {what}")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is out of range", f"give {what} ({lo} to {hi})")
        return value

    def bool_(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not true or false", "write true or false")
        return value

    def vlan(self, value: Any, key: str) -> int:
        return self.int_(value, key, 1, 4094, "a VLAN id")

    def cidr(self, value: Any, key: str) -> str:
        try:
            iface = ipaddress.ip_interface(str(value))
        except ValueError:
            raise self.fail(key, f"{value!r} is not an address with a prefix",
                            "write it like 203.0.113.130/26") from None
        if "/" not in str(value):
            raise self.fail(key, f"{value} has no prefix length",
                            f"write it with its prefix, e.g. {value}/26")
        return str(iface)

    def ip(self, value: Any, key: str) -> str:
        try:
            return str(ipaddress.ip_address(str(value)))
        except ValueError:
            raise self.fail(key, f"{value!r} is not an IP address",
                            "write a plain address such as 203.0.113.129") from None

    def name(self, value: Any, key: str, maxlen: int = 15) -> str:
        if not isinstance(value, str) or not re.fullmatch(
                rf"[A-Za-z][A-Za-z0-9_.-]{{0,{maxlen - 1}}}", value):
            raise self.fail(key, f"{value!r} is not a usable name",
                            f"start with a letter; letters, digits, '-', '_', '.'; "
                            f"{maxlen} characters at most")
        return value

    def port(self, d: dict[str, Any], key: str) -> PortDef:
        vlan = self.vlan(d["vlan"], f"{key}.vlan") if "vlan" in d else None
        trunks = tuple(self.vlan(v, f"{key}.trunks[{i}]")
                       for i, v in enumerate(self.list_(d.get("trunks"), f"{key}.trunks")))
        native = self.vlan(d["native"], f"{key}.native") if "native" in d else None
        if vlan is not None and (trunks or native is not None):
            raise self.fail(f"{key}.vlan", "an access port (vlan) cannot also be a trunk",
                            "keep `vlan:` for an access port, or `trunks:`/`native:` for a "
                            "trunk")
        return PortDef(vlan, trunks, native)


PORT_KEYS = {"switch", "vlan", "trunks", "native"}


def check_gateway(v: Checker, key: str, gateway: str | None, addresses: tuple[str, ...],
                  dhcp: bool = False) -> None:
    """A gateway must be on a subnet of one of the NIC's addresses (or link-local)."""
    if gateway is None:
        return
    gw = ipaddress.ip_address(gateway)
    if gw.version == 6 and gw.is_link_local:
        return
    nets = [ipaddress.ip_interface(a).network for a in addresses]
    if any(gw in n for n in nets if n.version == gw.version):
        return
    if not nets:
        if dhcp:
            return
        raise v.fail(key, f"gateway {gateway} is given but the NIC has no address",
                     "add an address on the gateway's subnet under `addresses:`, "
                     f"e.g. {gw + 1}/{'26' if gw.version == 4 else '64'}")
    raise v.fail(key, f"gateway {gateway} is on none of the NIC's subnets "
                 f"({', '.join(str(n) for n in nets)}): the default route could not be set",
                 "give a gateway inside one of those subnets (in the guide's Table 1, "
                 "203.0.113.129 for 203.0.113.130/26), or fix the address")


def check_kernel(v: Checker, key: str, kernel: Any, image: Any,
                 lookup: Callable[[str], object] = kernels.get_tiny) -> str | None:
    """A VM's `kernel:`: a Debian kernel package (`PACKAGE` or `PACKAGE=VERSION`), with
    image tiny only, whose tiny build is in the cache (LOOKUP finds it; nothing is built or
    downloaded here: the remedy says how to build it)."""
    if kernel is None:
        return None
    if not isinstance(kernel, str):
        raise v.fail(key, f"{kernel!r} is not a kernel package name",
                     "write a package such as linux-image-6.1.0-50-amd64")
    try:
        kernels.parse(kernel)
    except LabError as e:
        raise v.fail(key, e.problem, e.remedy) from None
    if image != "tiny":
        raise v.fail(key, f"the {image} image cannot be built on another kernel "
                     "(only tiny can, for now)", "remove `kernel:`, or write `image: tiny`")
    try:
        lookup(kernel)
    except LabError as e:
        raise v.fail(key, e.problem, e.remedy) from None
    return kernel
