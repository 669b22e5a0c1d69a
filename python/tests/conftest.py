"""Fixtures shared by the pytest files."""

import os
import signal
import uuid

import pytest

from eshm import ESHM

# The Ctrl-C tests need SIGINT delivered. A shell without job control starts background commands with
# SIGINT ignored, and an ignored signal stays ignored across fork and exec: catching it here makes it
# default again for every child, and deliverable to this process.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def pairs():
    """make(n=1, master_options=None, **slave_options): n master/slave pairs in this process (4 KiB rings
    unless told), closed and removed afterwards."""
    made = []

    def make(n=1, master_options=None, **slave_options):
        out = []
        for _ in range(n):
            name = f"pytest_{os.getpid()}_{uuid.uuid4().hex[:10]}"
            master = ESHM(name, role="master", **{"m2s_capacity": 4096, "s2m_capacity": 4096,
                                                   **(master_options or {})})
            slave = ESHM(name, role="slave", **slave_options)
            made.append((name, master, slave))
            out.append((master, slave))
        return out

    yield make
    for name, master, slave in made:
        slave.close()
        master.close()
        try:
            os.unlink(f"/dev/shm/eshm_{name}")
        except FileNotFoundError:
            pass
