"""The unixctl client of net/ovs.py (what `ovs-appctl` does) against a small server on a
real unix socket that answers as lib/unixctl.c does."""

import json
import socket
import threading

import pytest

from labfixtures.errors import LabError
from labfixtures.net.ovs import unixctl


def serve(path, answer):
    """Accept one connection on PATH, read one request, call ANSWER(request, conn)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    seen = {}

    def run():
        conn, _ = srv.accept()
        with conn:
            seen["request"] = json.loads(conn.recv(65536).decode())
            answer(seen["request"], conn)
        srv.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, seen


def test_request_and_result_read_in_pieces(tmp_path):
    def answer(req, conn):
        reply = json.dumps({"id": req["id"], "result": "netdev@ovs-netdev\n", "error": None})
        half = len(reply) // 2
        conn.sendall(reply[:half].encode())
        conn.sendall(reply[half:].encode())

    thread, seen = serve(tmp_path / "d.ctl", answer)
    assert unixctl(tmp_path / "d.ctl", "dpctl/add-dp", ["netdev@ovs-netdev"]) == \
        "netdev@ovs-netdev\n"
    thread.join(5)
    assert seen["request"] == {"id": 0, "method": "dpctl/add-dp",
                               "params": ["netdev@ovs-netdev"]}


def test_an_error_answer_is_a_lab_error_with_the_daemons_words(tmp_path):
    def answer(req, conn):
        conn.sendall(json.dumps({"id": req["id"], "result": None,
                                 "error": "ovs-vswitchd: File exists\n"}).encode())

    serve(tmp_path / "d.ctl", answer)
    with pytest.raises(LabError) as e:
        unixctl(tmp_path / "d.ctl", "dpctl/add-dp", ["netdev@x"])
    assert e.value.problem.endswith("dpctl/add-dp netdev@x` failed: ovs-vswitchd: File exists")
    assert "ovs-vswitchd.log" in e.value.remedy


def test_a_closed_connection_or_no_daemon_is_a_lab_error(tmp_path):
    serve(tmp_path / "d.ctl", lambda req, conn: None)
    with pytest.raises(LabError, match="without answering") as e:
        unixctl(tmp_path / "d.ctl", "version", [])
    assert "running" in e.value.remedy
    with pytest.raises(LabError, match="failed"):
        unixctl(tmp_path / "none.ctl", "version", [])


def test_an_answer_to_another_request_is_refused(tmp_path):
    serve(tmp_path / "d.ctl",
          lambda req, conn: conn.sendall(b'{"id": 7, "result": "", "error": null}'))
    with pytest.raises(LabError, match="unexpected answer"):
        unixctl(tmp_path / "d.ctl", "version", [])
