"""GuestSSH's handshake: the known-hosts file (a new host is remembered, a changed key is
refused with HostKeyChangedError (host, fingerprints) and never replaced in the file), and
a slow key exchange (a TCG guest on a loaded host) waited for instead of retried forever.

An in-process paramiko server on 127.0.0.1 stands for the guest (no VM: the scenario
test_s06_tuning does the same with a real guest whose sshd keys are regenerated).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from labfixtures.errors import HostKeyChangedError, LabError
from labfixtures.guests.ssh import GuestSSH, fingerprint, forget_host_keys


class _Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL


class _Slow:
    """A server socket whose sends after the first (the banner) wait DELAY seconds."""

    def __init__(self, sock: socket.socket, delay: float) -> None:
        self._sock, self._delay, self._sent = sock, delay, 0

    def send(self, data: bytes) -> int:
        self._sent += 1
        if self._sent > 1:
            time.sleep(self._delay)
        return self._sock.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class FakeGuest:
    """An SSH server on 127.0.0.1:PORT that accepts any public key, with HOST_KEY."""

    def __init__(self, host_key: paramiko.PKey, send_delay: float = 0.0) -> None:
        self.host_key = host_key  # for the next connections: may change
        self.send_delay = send_delay  # before each packet after the banner: a slow guest
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(_Slow(conn, self.send_delay) if self.send_delay else conn)
            t.add_server_key(self.host_key)
            self.transports.append(t)
            try:
                t.start_server(server=_Server())
            except (paramiko.SSHException, EOFError, OSError):
                continue

    def close(self) -> None:
        self.sock.close()
        for t in self.transports:
            t.close()


@pytest.fixture
def client_key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ecdsa"
    key = paramiko.ECDSAKey.generate()
    key.write_private_key_file(str(path))
    return path


@pytest.fixture
def guest_keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


def _connect(port: int, key: Path, known_hosts: Path) -> GuestSSH:
    return GuestSSH("127.0.0.1", port, user="etu", key=key,
                    known_hosts=known_hosts).connect(deadline=10.0)


def test_a_changed_host_key_is_refused_with_both_fingerprints(tmp_path, client_key,
                                                               guest_keys):
    old, new = guest_keys
    known = tmp_path / "known_hosts"
    guest = FakeGuest(old)
    try:
        _connect(guest.port, client_key, known).close()
        remembered = known.read_text()
        assert f"[127.0.0.1]:{guest.port}" in remembered, "a new host is remembered"
        # the same address and port, another key: the guest's keys were regenerated
        # (or another machine answers there)
        guest.host_key = new
        with pytest.raises(HostKeyChangedError) as e:
            _connect(guest.port, client_key, known)
    finally:
        guest.close()
    port = guest.port
    err = e.value
    assert isinstance(err, LabError)
    assert err.host == f"[127.0.0.1]:{port}"
    assert err.key_type == "ecdsa-sha2-nistp256"
    assert err.old_fingerprint == fingerprint(old) != err.new_fingerprint == fingerprint(new)
    assert err.known_hosts == str(known)
    assert err.old_fingerprint in str(err) and err.new_fingerprint in str(err)
    assert "ssh-keygen -R" in err.remedy
    assert known.read_text() == remembered, "the remembered key must not be replaced"


def test_the_same_key_again_connects(tmp_path, client_key, guest_keys):
    """The control: with the remembered key, a new client connects (no false alarm)."""
    key, _ = guest_keys
    known = tmp_path / "known_hosts"
    guest = FakeGuest(key)
    try:
        _connect(guest.port, client_key, known).close()
        conn = _connect(guest.port, client_key, known)
        assert conn.active
        conn.close()
    finally:
        guest.close()


def test_fingerprint_is_openssh_sha256(tmp_path):
    """The format of `ssh-keygen -lf`: SHA256: and 43 base64 characters, no padding."""
    key = paramiko.ECDSAKey.generate()
    fp = fingerprint(key)
    assert fp.startswith("SHA256:") and len(fp) == 7 + 43 and not fp.endswith("=")
    assert fingerprint(paramiko.ECDSAKey(data=key.asbytes())) == fp


def test_a_slow_key_exchange_is_waited_for(tmp_path, client_key, guest_keys):
    """The guest answers its banner at once but takes about a second for the key exchange:
    with a 0.3 s connect timeout, every attempt used to give up after 0.3 s ("No existing
    session") until the deadline; the wait now grows with the attempts (2 s at first)."""
    guest = FakeGuest(guest_keys[0], send_delay=0.4)
    try:
        t0 = time.monotonic()
        conn = GuestSSH("127.0.0.1", guest.port, user="etu", key=client_key,
                        known_hosts=tmp_path / "known_hosts",
                        connect_timeout=0.3).connect(deadline=8.0)
        assert conn.active
        conn.close()
        assert time.monotonic() - t0 < 8.0
    finally:
        guest.close()


def test_forget_host_keys_drops_only_the_names_given(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("# a comment\n"
                     "[127.0.0.1]:2210 ssh-ed25519 AAAAone\n"
                     "fe80::baad:caff:fefe:2%tap2 ssh-ed25519 AAAAtwo\n"
                     "fe80::baad:caff:fefe:2%tap22 ssh-ed25519 AAAAthree\n"
                     "other,[127.0.0.1]:2210 ecdsa-sha2-nistp256 AAAAfour\n"
                     "[127.0.0.1]:22100 ssh-ed25519 AAAAfive\n")
    dropped = forget_host_keys(known, ["[127.0.0.1]:2210", "fe80::baad:caff:fefe:2%tap2"])
    assert [line.split()[-1] for line in dropped] == ["AAAAone", "AAAAtwo", "AAAAfour"]
    assert known.read_text() == ("# a comment\n"
                                 "fe80::baad:caff:fefe:2%tap22 ssh-ed25519 AAAAthree\n"
                                 "[127.0.0.1]:22100 ssh-ed25519 AAAAfive\n")
    assert forget_host_keys(known, ["nobody"]) == []
    assert forget_host_keys(tmp_path / "missing", ["[127.0.0.1]:2210"]) == []


def test_a_forgotten_host_is_met_again_for_the_first_time(tmp_path, client_key, guest_keys):
    """What a VM's teardown does (VM.forget_host_keys): the next guest at the address, with
    another key, is remembered instead of refused."""
    old, new = guest_keys
    known = tmp_path / "known_hosts"
    guest = FakeGuest(old)
    try:
        first = _connect(guest.port, client_key, known)
        first.close()
        assert forget_host_keys(known, [first.host_key_name])
        guest.host_key = new
        _connect(guest.port, client_key, known).close()
    finally:
        guest.close()
    assert fingerprint(new) != fingerprint(old)
    assert known.read_text().split()[-1] == new.get_base64()
