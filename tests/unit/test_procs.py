"""SIGTERM handling: a process passes it on to the ones it names, once (real signals and a
real child process, no root needed)."""

import os
import signal
import subprocess

import pytest

from labfixtures.core import procs


@pytest.fixture
def default_sigterm():
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, old)


def test_the_first_sigterm_is_passed_on_the_second_interrupts(default_sigterm):
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert child.pid in procs.children()
        procs.interrupt_on_sigterm(lambda: [child.pid])
        os.kill(os.getpid(), signal.SIGTERM)  # passed on: the child ends, we go on
        assert child.wait(timeout=10) == -signal.SIGTERM
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        child.kill()
        child.wait()


def test_with_nobody_to_pass_it_on_to_sigterm_interrupts(default_sigterm):
    procs.interrupt_on_sigterm(lambda: [])
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_program_with_its_own_sigterm_handler_keeps_it():
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        procs.interrupt_on_sigterm()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)
