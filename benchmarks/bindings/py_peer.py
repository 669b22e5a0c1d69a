#!/usr/bin/env python3
"""One side of the per-binding throughput stream (benchmarks/bindings/run.py), through a Python binding.

    py_peer.py --api cython|cython_batch|ctypes writer NAME SECONDS [--lib PATH]
    py_peer.py --api cython|cython_batch|ctypes reader NAME [--lib PATH]

The protocol of cpp_peer.cc: the writer (master) waits for the reader, writes 64-byte messages for SECONDS,
then a 1-byte stop message, and prints "SENT <n>"; the reader (slave) counts 64-byte messages from the
first to the stop message and prints "RECV <n> <seconds>".

  cython        the eshm package: write() / read(), one message per call
  cython_batch  the eshm package: write_many() of 256 messages / read_many() of up to 1024
  ctypes        libeshm.so (--lib or $ESHM_LIBESHM) through ctypes: eshm_write() / eshm_read()
"""

import argparse
import ctypes
import os
import sys
import time

MESSAGE = bytes(64)
STOP = b"\x00"
BATCH = 256
SETUP_TIMEOUT_MS = 30000
ROLE_MASTER, ROLE_SLAVE = 0, 1


class Config(ctypes.Structure):
    _fields_ = [(n, t) for n, t in [
        ("struct_size", ctypes.c_uint32), ("role", ctypes.c_int32), ("disconnect_behavior", ctypes.c_int32),
        ("stale_threshold_ms", ctypes.c_int32), ("heartbeat_interval_ms", ctypes.c_int32),
        ("reconnect_wait_ms", ctypes.c_int32), ("reconnect_retry_interval_ms", ctypes.c_int32),
        ("max_reconnect_attempts", ctypes.c_int32), ("auto_cleanup", ctypes.c_int32),
        ("use_threads", ctypes.c_int32), ("m2s_capacity", ctypes.c_uint64), ("s2m_capacity", ctypes.c_uint64),
        ("max_message_bytes", ctypes.c_uint64), ("spin_ns", ctypes.c_int64), ("yield_ns", ctypes.c_int64),
        ("mode", ctypes.c_uint32), ("allow_sleep", ctypes.c_int32), ("allow_other_owner", ctypes.c_int32),
        ("reserved0", ctypes.c_uint32)]]


class Ctypes:
    """The few C ABI calls the stream needs."""

    def __init__(self, lib_path, name, role):
        lib = ctypes.CDLL(lib_path)
        # eshm_config_init is a macro in C; through an FFI, pass the size of the struct declared here.
        lib.eshm_config_init_size.argtypes = [ctypes.POINTER(Config), ctypes.c_size_t]
        lib.eshm_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(Config), ctypes.POINTER(ctypes.c_void_p)]
        lib.eshm_close.argtypes = [ctypes.c_void_p]
        lib.eshm_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        lib.eshm_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                  ctypes.POINTER(ctypes.c_size_t), ctypes.c_int]
        lib.eshm_is_remote_alive.argtypes = [ctypes.c_void_p]
        lib.eshm_last_error.restype = ctypes.c_char_p
        self.lib = lib
        cfg = Config()
        self._check(lib.eshm_config_init_size(ctypes.byref(cfg), ctypes.sizeof(cfg)))
        cfg.role = role
        cfg.max_reconnect_attempts = 300
        self.h = ctypes.c_void_p()
        self._check(lib.eshm_open(name.encode(), ctypes.byref(cfg), ctypes.byref(self.h)))

    def _check(self, rc):
        if rc != 0:
            raise RuntimeError(f"eshm error {rc}: {self.lib.eshm_last_error().decode()}")

    def alive(self):
        return self.lib.eshm_is_remote_alive(self.h) == 1

    def close(self):
        self.lib.eshm_close(self.h)


def writer(args, ch, alive):
    deadline = time.monotonic() + SETUP_TIMEOUT_MS / 1000
    while not alive():
        if time.monotonic() > deadline:
            raise RuntimeError("no reader")
        time.sleep(0.001)
    end = time.monotonic() + args.seconds
    sent = 0
    if args.api == "cython":
        write = ch.write
        while True:
            if (sent & 1023) == 0 and time.monotonic() >= end:
                break
            write(MESSAGE, timeout_ms=SETUP_TIMEOUT_MS)
            sent += 1
        write(STOP, timeout_ms=SETUP_TIMEOUT_MS)
    elif args.api == "cython_batch":
        batch = [MESSAGE] * BATCH
        while time.monotonic() < end:
            n = ch.write_many(batch, timeout_ms=SETUP_TIMEOUT_MS)
            sent += n
            if n < BATCH:  # the deadline cut the batch: send the rest
                sent += ch.write_many(batch[n:], timeout_ms=SETUP_TIMEOUT_MS)
        ch.write(STOP, timeout_ms=SETUP_TIMEOUT_MS)
    else:
        lib, h = ch.lib, ch.h
        write = lib.eshm_write
        while True:
            if (sent & 1023) == 0 and time.monotonic() >= end:
                break
            rc = write(h, MESSAGE, 64, SETUP_TIMEOUT_MS)
            if rc != 0:
                ch._check(rc)
            sent += 1
        ch._check(write(h, STOP, 1, SETUP_TIMEOUT_MS))
    print(f"SENT {sent}", flush=True)
    deadline = time.monotonic() + SETUP_TIMEOUT_MS / 1000
    while alive() and time.monotonic() < deadline:
        time.sleep(0.001)


def reader(args, ch):
    count = 0
    first = None
    if args.api == "cython":
        read = ch.read
        while True:
            data = read(4096, timeout_ms=SETUP_TIMEOUT_MS)
            if len(data) != 64:
                break
            if count == 0:
                first = time.monotonic()
            count += 1
    elif args.api == "cython_batch":
        done = False
        while not done:
            for data in ch.read_many(1024, timeout_ms=SETUP_TIMEOUT_MS):
                if len(data) != 64:
                    done = True
                    break
                if count == 0:
                    first = time.monotonic()
                count += 1
    else:
        lib, h = ch.lib, ch.h
        read = lib.eshm_read
        buf = ctypes.create_string_buffer(4096)
        n = ctypes.c_size_t()
        ref = ctypes.byref(n)
        while True:
            rc = read(h, buf, 4096, ref, SETUP_TIMEOUT_MS)
            if rc != 0:
                ch._check(rc)
            if n.value != 64:
                break
            if count == 0:
                first = time.monotonic()
            count += 1
    elapsed = time.monotonic() - first if first is not None else 0.0
    print(f"RECV {count} {elapsed:.6f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", choices=["cython", "cython_batch", "ctypes"], required=True)
    parser.add_argument("--lib", default=os.environ.get("ESHM_LIBESHM"))
    parser.add_argument("side", choices=["writer", "reader"])
    parser.add_argument("name")
    parser.add_argument("seconds", type=float, nargs="?", default=1.0)
    args = parser.parse_args()
    role = ROLE_MASTER if args.side == "writer" else ROLE_SLAVE
    if args.api == "ctypes":
        ch = Ctypes(args.lib, args.name, role)
        alive = ch.alive
    else:
        import eshm

        ch = eshm.ESHM(args.name, role=role, max_reconnect_attempts=300)
        alive = ch.is_remote_alive
    try:
        if args.side == "writer":
            writer(args, ch, alive)
        else:
            reader(args, ch)
    finally:
        ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
