"""Named network namespaces, created and entered from this process.

Spawning `ip netns add` / `ip netns exec` costs milliseconds per call and dominated the
shell prototype. The same system calls made here cost microseconds:

* `create(name)` unshares the *calling thread* into a new network namespace, bind-mounts
  it on /run/netns/NAME (what `ip netns add` does) and returns the thread to where it was;
* `entered(name)` moves the calling thread into a namespace for the duration of a `with`
  block: sockets opened there (netlink, TCP for SSH, raw for scapy) stay bound to that
  namespace after the thread comes back, which is how the test process talks to the lab
  without `ip netns exec`;
* `popen(name, argv)` starts a program inside a namespace (`core.runner.run(argv,
  netns=name)` runs one to completion and captures its output).

Only the calling thread ever changes namespace, and always comes back: the root namespace
of the host is never touched.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labfixtures.errors import LabError

NETNS_RUN_DIR = Path("/run/netns")

CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.RLock()


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def exists(name: str) -> bool:
    return path(name).exists()


def list_names() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


def _setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def _share_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so mounts propagate."""
    NETNS_RUN_DIR.mkdir(parents=True, exist_ok=True)
    d = str(NETNS_RUN_DIR).encode()
    if _libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(d, d, b"none", MS_BIND | MS_REC, None), f"bind mount {d!r}")
    _check(_libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None), f"share {d!r}")


def create(name: str) -> Path:
    """Create the named namespace /run/netns/NAME; refuse to reuse an existing one."""
    if os.geteuid() != 0:
        raise LabError(
            f"creating network namespace {name!r} needs root privileges",
            "run as root (sudo), e.g. `sudo .venv/bin/pytest ...`",
        )
    target = path(name)
    with _lock:
        _share_run_dir()
        try:
            os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
        except FileExistsError:
            raise LabError(
                f"network namespace {name!r} already exists",
                "pick another name, or remove the old lab with `labctl clean`",
            ) from None
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            try:
                _check(
                    _libc.mount(b"/proc/thread-self/ns/net", str(target).encode(), b"none",
                                MS_BIND, None),
                    f"bind mount on {target}",
                )
            finally:
                _setns(home)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            os.close(home)
    return target


def delete(name: str) -> bool:
    """Unmount and remove /run/netns/NAME. The kernel frees the namespace once the last
    process and socket in it are gone (asynchronously, like `ip netns del`)."""
    target = path(name)
    if not target.exists():
        return False
    ret = _libc.umount2(str(target).encode(), MNT_DETACH)
    if ret != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(ret, f"umount {target}")
    target.unlink(missing_ok=True)
    return True


def inode(name: str) -> int:
    return os.stat(path(name)).st_ino


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside namespace NAME (None: stay here).

    Keep the body short: open sockets, do ioctls. The thread always comes back.
    """
    if name is None:
        yield
        return
    try:
        fd = os.open(path(name), os.O_RDONLY)
    except FileNotFoundError:
        raise LabError(
            f"network namespace {name!r} does not exist",
            "was its lab torn down already? list labs with `labctl status`",
        ) from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(fd)
        os.close(home)


def pids(name: str) -> list[int]:
    """Processes whose network namespace is NAME (like `ip netns pids`)."""
    try:
        st = os.stat(path(name))
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            s = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (s.st_ino, s.st_dev) == (st.st_ino, st.st_dev):
            found.append(int(entry))
    return found


def _enter_in_child(ns_path: str) -> None:
    fd = os.open(ns_path, os.O_RDONLY)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        os._exit(127)
    os.close(fd)


def popen(name: str | None, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ARGV inside namespace NAME (or where we are, if NAME is None)."""
    if name is not None:
        ns_path = str(path(name))
        if not os.path.exists(ns_path):
            raise LabError(f"network namespace {name!r} does not exist",
                           "create the lab first")
        kwargs["preexec_fn"] = lambda: _enter_in_child(ns_path)
    return subprocess.Popen(argv, **kwargs)

