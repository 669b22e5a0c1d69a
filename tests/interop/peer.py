#!/usr/bin/env python3
"""A test peer for the interop tests: one endpoint of an eshm channel, through either binding.

    peer.py payloads --binding cython|ctypes --role master|slave NAME [--lib PATH]
        The master sends a payload of every size class (0, 1, 15, 16, ..., 65536, ..., the channel's
        maximum) and checks that the slave echoes each back unchanged; both sides print one line per payload
        with its size and SHA-256, so the test can compare what was sent with what arrived, both ways:
          master: "SENT <i> <size> <sha256>" then "ECHO <i> <size> <sha256>"
          slave:  "RECV <i> <size> <sha256>" (then it writes the same bytes back)
        The master also checks that a message one byte over the maximum is refused ("TOO_LARGE_REFUSED").
        Last line "DONE <n>" (exit 0) or "FAIL <reason>" (exit 1).

    peer.py auto NAME --count N
        Opens the channel with role AUTO through the Cython binding, prints "ROLE MASTER" or "ROLE SLAVE",
        then speaks the eshm_demo line protocol: as master it sends N "Hello from Python master #i" and
        waits for N replies; as slave it answers N messages with "ACK from Python slave #k". Last line
        "DONE".

--binding ctypes uses the C ABI (libeshm.so, --lib or $ESHM_LIBESHM) through ctypes; cython uses the eshm
Python package. Every wait is bounded; a peer that waits too long fails with a message.
"""

import argparse
import ctypes
import hashlib
import os
import random
import sys
import time

ROLE_MASTER, ROLE_SLAVE, ROLE_AUTO = 0, 1, 2
E_TIMEOUT = -10
E_MASTER_STALE = -11
E_SLAVE_STALE = -12
E_MESSAGE_TOO_LARGE = -14
IO_TIMEOUT_MS = 2000
TOTAL_TIMEOUT_S = 120


def sha(data):
    return hashlib.sha256(data).hexdigest()


def payload_sizes(max_size):
    sizes = [0, 1, 15, 16, 17, 255, 256, 4095, 4096, 4097, 65535, 65536, 65537, max_size - 1, max_size]
    return sorted({s for s in sizes if 0 <= s <= max_size})


def payload(index, size):
    """Deterministic bytes of every value (NULs included), different for every index."""
    return random.Random(index * 1_000_003 + size).randbytes(size)


class CtypesChannel:
    """The C ABI of libeshm.so (eshm/eshm.h) through ctypes."""

    class Config(ctypes.Structure):
        _fields_ = [
            ("struct_size", ctypes.c_uint32),
            ("role", ctypes.c_int32),
            ("disconnect_behavior", ctypes.c_int32),
            ("stale_threshold_ms", ctypes.c_int32),
            ("heartbeat_interval_ms", ctypes.c_int32),
            ("reconnect_wait_ms", ctypes.c_int32),
            ("reconnect_retry_interval_ms", ctypes.c_int32),
            ("max_reconnect_attempts", ctypes.c_int32),
            ("auto_cleanup", ctypes.c_int32),
            ("use_threads", ctypes.c_int32),
            ("m2s_capacity", ctypes.c_uint64),
            ("s2m_capacity", ctypes.c_uint64),
            ("max_message_bytes", ctypes.c_uint64),
            ("spin_ns", ctypes.c_int64),
            ("yield_ns", ctypes.c_int64),
            ("mode", ctypes.c_uint32),
            ("allow_sleep", ctypes.c_int32),
            ("allow_other_owner", ctypes.c_int32),
            ("reserved0", ctypes.c_uint32),
        ]

    def __init__(self, lib_path, name, role):
        lib = ctypes.CDLL(lib_path)
        assert ctypes.sizeof(self.Config) == 96, ctypes.sizeof(self.Config)
        # eshm_config_init is a macro in C; through an FFI, pass the size of the struct declared here.
        lib.eshm_config_init_size.argtypes = [ctypes.POINTER(self.Config), ctypes.c_size_t]
        lib.eshm_config_init_size.restype = ctypes.c_int
        lib.eshm_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(self.Config), ctypes.POINTER(ctypes.c_void_p)]
        lib.eshm_open.restype = ctypes.c_int
        lib.eshm_close.argtypes = [ctypes.c_void_p]
        lib.eshm_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        lib.eshm_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                  ctypes.POINTER(ctypes.c_size_t), ctypes.c_int]
        lib.eshm_max_message_size.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.eshm_get_role.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        lib.eshm_last_error.restype = ctypes.c_char_p
        lib.eshm_strerror.restype = ctypes.c_char_p
        lib.eshm_strerror.argtypes = [ctypes.c_int]
        self.lib = lib
        cfg = self.Config()
        self._check(lib.eshm_config_init_size(ctypes.byref(cfg), ctypes.sizeof(cfg)), "eshm_config_init_size")
        cfg.role = role
        cfg.max_reconnect_attempts = 200  # a slave waits up to 20 s for its master
        handle = ctypes.c_void_p()
        self._check(lib.eshm_open(name.encode(), ctypes.byref(cfg), ctypes.byref(handle)), "eshm_open")
        self.h = handle
        n = ctypes.c_size_t()
        self._check(lib.eshm_max_message_size(self.h, ctypes.byref(n)), "eshm_max_message_size")
        self.max_message_size = n.value
        self._buf = ctypes.create_string_buffer(max(1, n.value))

    def _check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: {rc} {self.lib.eshm_strerror(rc).decode()}: "
                               f"{self.lib.eshm_last_error().decode()}")

    def role(self):
        r = ctypes.c_int()
        self._check(self.lib.eshm_get_role(self.h, ctypes.byref(r)), "eshm_get_role")
        return r.value

    def write(self, data, timeout_ms):
        """Returns True when sent, False if the ring is still full or the peer gone after timeout_ms."""
        rc = self.lib.eshm_write(self.h, data, len(data), timeout_ms)
        if rc in (E_TIMEOUT, E_MASTER_STALE, E_SLAVE_STALE):
            return False
        if rc == E_MESSAGE_TOO_LARGE:
            raise OverflowError("message too large")
        self._check(rc, "eshm_write")
        return True

    def read(self, timeout_ms):
        """The next message, or None after timeout_ms (or with the peer gone)."""
        n = ctypes.c_size_t()
        rc = self.lib.eshm_read(self.h, self._buf, len(self._buf), ctypes.byref(n), timeout_ms)
        if rc in (E_TIMEOUT, E_MASTER_STALE, E_SLAVE_STALE):
            return None
        self._check(rc, "eshm_read")
        return self._buf.raw[: n.value]

    def close(self):
        self.lib.eshm_close(self.h)


class CythonChannel:
    """The eshm Python package (the Cython binding)."""

    def __init__(self, name, role):
        import eshm

        self.eshm = eshm
        self.ch = eshm.ESHM(name, role=role, max_reconnect_attempts=200)
        self.max_message_size = self.ch.max_message_size

    def role(self):
        return int(self.ch.get_role())

    def write(self, data, timeout_ms):
        try:
            self.ch.write(data, timeout_ms=timeout_ms)
            return True
        except (self.eshm.ESHMTimeoutError, self.eshm.PeerStaleError):
            return False
        except self.eshm.MessageTooLargeError:
            raise OverflowError("message too large")

    def read(self, timeout_ms):
        try:
            return self.ch.read(buffer_size=self.max_message_size, timeout_ms=timeout_ms)
        except (self.eshm.ESHMTimeoutError, self.eshm.PeerStaleError):
            return None

    def close(self):
        self.ch.close()


def out(line):
    print(line, flush=True)


def fail(reason):
    out(f"FAIL {reason}")
    return 1


def until_deadline(deadline, step):
    """Calls step() until it returns something other than None/False, or the deadline passes."""
    while time.monotonic() < deadline:
        result = step()
        if result is not None and result is not False:
            return result
    return None


def run_payloads(args):
    role = ROLE_MASTER if args.role == "master" else ROLE_SLAVE
    if args.binding == "ctypes":
        lib = args.lib or os.environ.get("ESHM_LIBESHM")
        if not lib:
            return fail("no libeshm.so: pass --lib or set ESHM_LIBESHM")
        ch = CtypesChannel(lib, args.name, role)
    else:
        ch = CythonChannel(args.name, role)
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    try:
        out(f"READY {args.binding} {args.role} role={ch.role()} max={ch.max_message_size}")
        sizes = payload_sizes(ch.max_message_size)
        if role == ROLE_MASTER:
            for i, size in enumerate(sizes):
                data = payload(i, size)
                if not until_deadline(deadline, lambda: ch.write(data, IO_TIMEOUT_MS)):
                    return fail(f"write {i} ({size} bytes) timed out")
                out(f"SENT {i} {size} {sha(data)}")
                echo = until_deadline(deadline, lambda: ch.read(IO_TIMEOUT_MS))
                if echo is None:
                    return fail(f"no echo of {i} ({size} bytes)")
                out(f"ECHO {i} {len(echo)} {sha(echo)}")
                if echo != data:
                    return fail(f"echo {i} differs: sent {size} bytes, got {len(echo)}")
            try:
                ch.write(b"\0" * (ch.max_message_size + 1), IO_TIMEOUT_MS)
                return fail("a message over the maximum was accepted")
            except OverflowError:
                out("TOO_LARGE_REFUSED")
            # Tell the slave we are done, and wait for it to leave before closing (closing the master
            # removes the segment name).
            until_deadline(deadline, lambda: ch.write(b"BYE", IO_TIMEOUT_MS))
            until_deadline(deadline, lambda: ch.read(IO_TIMEOUT_MS))
        else:
            i = 0
            while True:
                data = until_deadline(deadline, lambda: ch.read(IO_TIMEOUT_MS))
                if data is None:
                    return fail(f"message {i} never arrived")
                if data == b"BYE":
                    until_deadline(deadline, lambda: ch.write(b"BYE", IO_TIMEOUT_MS))
                    break
                out(f"RECV {i} {len(data)} {sha(data)}")
                if not until_deadline(deadline, lambda: ch.write(data, IO_TIMEOUT_MS)):
                    return fail(f"echo {i} not sent")
                i += 1
        out(f"DONE {len(sizes)}")
        return 0
    finally:
        ch.close()


def run_auto(args):
    ch = CythonChannel(args.name, ROLE_AUTO)
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    try:
        role = ch.role()
        out(f"ROLE {'MASTER' if role == ROLE_MASTER else 'SLAVE'}")
        if role == ROLE_MASTER:
            received = 0
            for i in range(args.count):
                msg = f"Hello from Python master #{i}".encode()
                if not until_deadline(deadline, lambda: ch.write(msg, IO_TIMEOUT_MS)):
                    return fail(f"write {i} timed out")
                out(f"[MASTER] Sent: {msg.decode()}")
            while received < args.count:
                reply = until_deadline(deadline, lambda: ch.read(IO_TIMEOUT_MS))
                if reply is None:
                    return fail(f"only {received} replies")
                out(f"[MASTER] Received: {reply.rstrip(bytes(1)).decode()}")
                received += 1
            # Let the slave read everything before the master's close removes the name.
            time.sleep(0.5)
        else:
            for k in range(args.count):
                data = until_deadline(deadline, lambda: ch.read(IO_TIMEOUT_MS))
                if data is None:
                    return fail(f"message {k} never arrived")
                out(f"[SLAVE] Received ({len(data)} bytes): {data.rstrip(bytes(1)).decode()}")
                reply = f"ACK from Python slave #{k}".encode()
                if not until_deadline(deadline, lambda: ch.write(reply, IO_TIMEOUT_MS)):
                    return fail(f"reply {k} timed out")
                out(f"[SLAVE] Sent: {reply.decode()}")
        out("DONE")
        return 0
    finally:
        ch.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("payloads")
    p.add_argument("name")
    p.add_argument("--binding", choices=["cython", "ctypes"], required=True)
    p.add_argument("--role", choices=["master", "slave"], required=True)
    p.add_argument("--lib")
    a = sub.add_parser("auto")
    a.add_argument("name")
    a.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    return run_payloads(args) if args.cmd == "payloads" else run_auto(args)


if __name__ == "__main__":
    sys.exit(main())
