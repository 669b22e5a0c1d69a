"""eshm's Python transports for eshm-bench, the one benchmark tool, and `python -m eshm.bench`, its front end.

    python -m eshm.bench [eshm-bench flags]   eshm-bench with this interpreter's transports (--compare=python
                                              unless --compare is given); the tool is --eshm-bench=PATH,
                                              $ESHM_BENCH, eshm-bench on PATH, beside this file in Bazel's
                                              runfiles, or bazel-bin's
    python -m eshm.bench --peer-list          every transport below, and why one cannot run here

eshm-bench (benchmarks/eshm_bench) schedules every run (repetitions interleaved with the other transports),
keeps the medians, measures the same run's floors and writes the tables and the JSON (schema eshm-bench/2).
For each run of a transport named here it starts

    python -m eshm.bench --peer=NAME --mode=stream|pingpong --wait=spin|blocking --size=BYTES
        --warmup_s=S --duration_s=S [--messages=N] [--eshm_wait=sleep|adaptive] [--cpus=A,B] --samples=PATH

which forks the second process, runs both sides and prints `messages=N seconds=S` as its last line. stream:
the parent writes for warmup_s, a marker, then for duration_s (or N messages), then an end marker, and the
child counts the messages between the markers over its own time (both counts must agree, every message
must have its size). pingpong: the parent sends, the child echoes, and each round trip's nanoseconds go to
PATH (unsigned 64-bit, native order). Exit status 3: this transport cannot run this combination (why, on
stderr). Import this module only to benchmark: nothing in the eshm package imports it.
"""

import argparse
import array
import functools
import multiprocessing
import os
import queue
import shutil
import sys
import tempfile
import time
import uuid

UNSUPPORTED = 3
# Markers that end a phase: lengths the measured messages never have (sizes start at 8 bytes).
_WARM_END = b"W"
_END = b"E"
# Every queue holds about this much between the two processes, as eshm's rings do: without a bound,
# multiprocessing.Queue's put() and pyzmq's send() would "send" into the writer's own memory.
IN_FLIGHT_BYTES = 4 << 20
ARRAY_SLOTS = 4


class Unsupported(Exception):
    """This transport cannot run the asked combination."""


class End:
    """One process's end of a connection: send(message), recv() -> message, close()."""

    def __init__(self, send, recv, close=lambda: None, **extra):
        self.send, self.recv, self.close = send, recv, close
        self.__dict__.update(extra)


def _unique(prefix="eshmbench_py"):
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _ipc_address():
    return f"ipc://{tempfile.gettempdir()}/{_unique()}.ipc"


def _in_flight(size):
    return max(16, IN_FLIGHT_BYTES // (size + 64))


def _spinning(poll):
    """recv() that polls `poll()` (None: nothing yet) without sleeping."""
    def recv():
        while True:
            m = poll()
            if m is not None:
                return m
    return recv


def _ring_bytes(size):
    # As eshm-bench's C++ transports: at least 1 MiB, at least four of the largest message, a power of two.
    need = max(1 << 20, 4 * (size + 64))
    return 1 << (need - 1).bit_length()


# ---- Transports: each returns (open the parent's end, open the child's end, cleanup); the openers run in
# the process that uses the end, after the fork, unless the transport sets `parent_first` (eshm: the master
# exists before its slave attaches).


def _eshm_channel(name, master, wait, size, **kw):
    import eshm

    return eshm.ESHM(name, role="master" if master else "slave", m2s_capacity=_ring_bytes(size),
                     s2m_capacity=_ring_bytes(size), wait=wait, max_reconnect_attempts=100,
                     reconnect_retry_interval_ms=10, **kw)


def _eshm(o):
    """ESHM.write() / read() as an application calls them (batch: write_many() / read_many())."""
    name = _unique()
    wait = "spin" if o.wait == "spin" else o.eshm_wait

    def open_end(master):
        ch = _eshm_channel(name, master, wait, o.size)
        recv = ch.read if o.size <= 4096 else functools.partial(ch.read, o.size)
        return End(ch.write, recv, ch.close, send_many=ch.write_many, recv_many=ch.read_many)

    return functools.partial(open_end, True), functools.partial(open_end, False), None


def _ctypes(o):
    """The C ABI of libeshm.so ($ESHM_LIBESHM) through ctypes: eshm_write() / eshm_read()."""
    import ctypes
    import struct

    lib = ctypes.CDLL(os.environ["ESHM_LIBESHM"])
    lib.eshm_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.eshm_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    lib.eshm_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                              ctypes.c_int]
    lib.eshm_close.argtypes = [ctypes.c_void_p]
    lib.eshm_last_error.restype = ctypes.c_char_p
    name = _unique().encode()

    def check(rc):
        if rc != 0:
            raise RuntimeError(f"eshm error {rc}: {lib.eshm_last_error().decode()}")

    def open_end(master):
        cfg = (ctypes.c_char * 96)()  # eshm_config (eshm.h gives the offsets)
        check(lib.eshm_config_init_size(cfg, 96))
        struct.pack_into("<i", cfg, 4, 0 if master else 1)  # role
        struct.pack_into("<ii", cfg, 24, 10, 300)  # reconnect_retry_interval_ms, max_reconnect_attempts
        struct.pack_into("<QQ", cfg, 40, _ring_bytes(o.size), _ring_bytes(o.size))  # m2s, s2m capacity
        if o.wait == "spin":
            struct.pack_into("<i", cfg, 84, 0)  # allow_sleep
        elif o.eshm_wait == "sleep":
            struct.pack_into("<qq", cfg, 64, 0, 0)  # spin_ns, yield_ns
        h = ctypes.c_void_p()
        check(lib.eshm_open(name, cfg, ctypes.byref(h)))
        write, read = lib.eshm_write, lib.eshm_read
        buf = ctypes.create_string_buffer(max(4096, o.size))
        n = ctypes.c_size_t()
        ref, cap = ctypes.byref(n), len(buf)

        def send(m):
            rc = write(h, m, len(m), 30000)
            if rc:
                check(rc)

        def recv():
            rc = read(h, buf, cap, ref, 30000)
            if rc:
                check(rc)
            return buf.raw[:n.value]

        return End(send, recv, lambda: lib.eshm_close(h))

    return functools.partial(open_end, True), functools.partial(open_end, False), None


def _pipe(o):
    a, b = multiprocessing.Pipe(duplex=True)

    def open_end(mine, other):
        other.close()
        recv = mine.recv_bytes
        if o.wait == "spin":
            poll = mine.poll
            recv = _spinning(lambda: mine.recv_bytes() if poll() else None)
        return End(mine.send_bytes, recv, mine.close)

    return functools.partial(open_end, a, b), functools.partial(open_end, b, a), None


def _queue(o, faster=False):
    if faster:
        import faster_fifo

        q1, q2 = faster_fifo.Queue(max_size_bytes=IN_FLIGHT_BYTES), faster_fifo.Queue(max_size_bytes=IN_FLIGHT_BYTES)
    else:
        q1, q2 = multiprocessing.Queue(_in_flight(o.size)), multiprocessing.Queue(_in_flight(o.size))

    def open_end(out_q, in_q):
        recv = in_q.get
        if o.wait == "spin":
            get, empty = in_q.get_nowait, queue.Empty

            def poll():
                try:
                    return get()
                except empty:
                    return None

            recv = _spinning(poll)
        return End(out_q.put, recv)

    return functools.partial(open_end, q1, q2), functools.partial(open_end, q2, q1), None


def _zmq(o):
    """pyzmq PAIR sockets over ipc:// (large messages sent with copy=False)."""
    address = _ipc_address()

    def open_end(bind):
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        for option in (zmq.SNDHWM, zmq.RCVHWM):
            sock.setsockopt(option, _in_flight(o.size))
        sock.setsockopt(zmq.LINGER, 1000)
        (sock.bind if bind else sock.connect)(address)
        send = functools.partial(sock.send, copy=False) if o.size > 4096 else sock.send
        recv = sock.recv
        if o.wait == "spin":
            again, flags = zmq.Again, zmq.NOBLOCK

            def poll():
                try:
                    return sock.recv(flags)
                except again:
                    return None

            recv = _spinning(poll)
        return End(send, recv, lambda: (sock.close(), ctx.term()))

    return functools.partial(open_end, True), functools.partial(open_end, False), _unlink_ipc(address)


def _unlink_ipc(address):
    def cleanup():
        try:
            os.unlink(address[len("ipc://"):])
        except FileNotFoundError:
            pass
    return cleanup


def _iceoryx2(o):
    """iceoryx2's Python binding: one publish-subscribe service per direction (IPC service type), byte slices
    loaned from the publisher's shared memory, filled in place and sent; a full subscriber buffer makes the
    publisher wait. blocking adds one event service per direction: the sender notifies after each message
    and a receiver that finds nothing sleeps in the listener's blocking_wait()."""
    prefix = f"eshm_bench/{_unique()}"
    depth = _in_flight(o.size)

    def open_end(first):
        import ctypes

        import iceoryx2 as iox

        iox.set_log_level(iox.LogLevel.Error)
        node = (iox.NodeBuilder.new().signal_handling_mode(iox.SignalHandlingMode.Disabled)
                .create(iox.ServiceType.Ipc))
        out_dir, in_dir = ("a", "b") if first else ("b", "a")
        services = []

        def service(direction, event):
            builder = node.service_builder(iox.ServiceName.new(f"{prefix}/{direction}{'/event' if event else ''}"))
            if event:
                s = builder.event().max_notifiers(1).max_listeners(1).open_or_create()
            else:
                s = (builder.publish_subscribe(iox.Slice[ctypes.c_uint8]).subscriber_max_buffer_size(depth)
                     .history_size(0).enable_safe_overflow(False).max_publishers(1).max_subscribers(1)
                     .open_or_create())
            services.append(s)
            return s

        pub = (service(out_dir, False).publisher_builder().initial_max_slice_len(o.size)
               .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered).create())
        sub = service(in_dir, False).subscriber_builder().buffer_size(depth).create()
        ports = [pub, sub]
        notify = wait = None
        if o.wait != "spin":
            notifier = service(out_dir, True).notifier_builder().create()
            listener = service(in_dir, True).listener_builder().create()
            ports += [notifier, listener]
            notify, wait = notifier.notify, listener.blocking_wait

        def send(m):
            sample = pub.loan_slice_uninit(len(m))
            ctypes.memmove(sample.payload_ptr, m, len(m))
            sample.assume_init().send()
            if notify is not None:
                notify()

        def recv():
            while True:
                sample = sub.receive()
                if sample is not None:
                    m = ctypes.string_at(sample.payload_ptr, sample.header.number_of_elements)
                    sample.delete()
                    return m
                if wait is not None:
                    wait()  # notifications are kept until collected: none is missed

        def close():
            for port in ports:
                port.delete()
            services.clear()

        return End(send, recv, close)

    return functools.partial(open_end, True), functools.partial(open_end, False), None


# ---- numpy arrays, one per message (stream only); the receiver reads each array's first element ----


def _eshm_array(o, view=False):
    """write_array() (one copy, into the ring); read_array() (a new array) or, view, recv_array() (in place)."""
    name = _unique()
    capacity = 1 << ((ARRAY_SLOTS + 1) * (o.size + 4096) - 1).bit_length()

    def open_end(master):
        import eshm

        ch = eshm.ESHM(name, role="master" if master else "slave", m2s_capacity=capacity, s2m_capacity=capacity,
                       max_reconnect_attempts=100, reconnect_retry_interval_ms=10)
        if view:
            def recv():
                with ch.recv_array(timeout_ms=-1) as a:
                    return float(a[0]), a.nbytes
        else:
            def recv():
                a = ch.read_array(timeout_ms=-1)
                return float(a[0]), a.nbytes
        return End(ch.write_array, recv, ch.close)

    return functools.partial(open_end, True), functools.partial(open_end, False), None


def _shm_pipe_array(o):
    """multiprocessing.shared_memory plus Pipes, the usual hand-made zero-copy path: ARRAY_SLOTS slots; the
    sender copies an array into a free slot and sends the slot's number (8 bytes); the receiver wraps the
    slot in an ndarray (no copy), reads it and returns the slot through a second Pipe."""
    import struct
    from multiprocessing import shared_memory

    import numpy as np

    shm = shared_memory.SharedMemory(create=True, size=ARRAY_SLOTS * o.size)
    data_r, data_w = multiprocessing.Pipe(duplex=False)
    free_r, free_w = multiprocessing.Pipe(duplex=False)
    slot = struct.Struct("<q")
    state = {"next": 0, "in_flight": 0}

    def sender():
        def send(a):
            if state["in_flight"] == ARRAY_SLOTS:
                if not free_r.poll(30):
                    raise RuntimeError("shared_memory+Pipe: the receiver freed no slot for 30 s")
                free_r.recv_bytes()
                state["in_flight"] -= 1
            i = state["next"]
            state["next"] = (i + 1) % ARRAY_SLOTS
            if a.size == 1:
                data_w.send_bytes(slot.pack(-1 - int(a[0])))  # a marker: its value, negative
                return
            np.copyto(np.ndarray(a.shape, a.dtype, buffer=shm.buf, offset=i * o.size), a)
            state["in_flight"] += 1
            data_w.send_bytes(slot.pack(i))
        return End(send, None, shm.close)

    def receiver():
        def recv():
            i = slot.unpack(data_r.recv_bytes())[0]
            if i < 0:
                return float(-1 - i), 4
            a = np.ndarray((o.size // 4,), np.float32, buffer=shm.buf, offset=i * o.size)
            first = float(a[0])
            del a
            free_w.send_bytes(b"")
            return first, o.size
        return End(None, recv, shm.close)

    return sender, receiver, shm.unlink


def _zmq_array(o):
    """pyzmq PUSH/PULL over ipc://: send(copy=False, track=True) from the array's memory (the sender waits
    for the tracker before it refills that array) and recv(copy=False) wrapped by np.frombuffer."""
    address = _ipc_address()

    def open_end(bind):
        import numpy as np
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUSH if bind else zmq.PULL)
        sock.setsockopt(zmq.SNDHWM if bind else zmq.RCVHWM, ARRAY_SLOTS)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.SNDTIMEO, 30_000)
        (sock.bind if bind else sock.connect)(address)
        trackers = {}

        def send(a):
            trackers[id(a)] = sock.send(a, copy=False, track=True)

        def before_refill(a):
            tracker = trackers.pop(id(a), None)
            if tracker is not None:
                tracker.wait(30)

        def recv():
            a = np.frombuffer(sock.recv(copy=False).buffer, np.float32)
            return float(a[0]), a.nbytes

        return End(send, recv, lambda: (sock.close(), ctx.term()), before_refill=before_refill)

    return functools.partial(open_end, True), functools.partial(open_end, False), _unlink_ipc(address)


# ---- asyncio clients (pingpong only): the parent awaits each echo on an event loop ----


def _asyncio(o, how):
    """The echo (child) uses blocking calls; the client (parent) sends, then awaits: eshm read_async(),
    eshm asyncio.to_thread(read), or a zmq.asyncio PAIR socket over ipc://."""
    if how == "zmq":
        address = _ipc_address()

        def client():
            import zmq.asyncio

            ctx = zmq.asyncio.Context()
            sock = ctx.socket(zmq.PAIR)
            sock.bind(address)
            return End(sock.send, sock.recv, lambda: (sock.close(), ctx.term()), awaits_send=True)

        def echo():
            import zmq

            ctx = zmq.Context()
            sock = ctx.socket(zmq.PAIR)
            sock.connect(address)
            return End(sock.send, sock.recv, lambda: (sock.close(), ctx.term()))

        return client, echo, _unlink_ipc(address)
    name = _unique()

    def client():
        import asyncio

        ch = _eshm_channel(name, True, "adaptive", o.size)
        recv = ch.read_async if how == "read_async" else (lambda: asyncio.to_thread(ch.read, None, -1))
        return End(ch.write, recv, ch.close)

    def echo():
        ch = _eshm_channel(name, False, o.eshm_wait, o.size)
        return End(ch.write, functools.partial(ch.read, None, -1), ch.close)

    return client, echo, None


# name -> (factory, modes, waits, modules to import, what it measures)
_BOTH, _STREAM, _PINGPONG = ("stream", "pingpong"), ("stream",), ("pingpong",)
_ANY, _BLOCKING = ("spin", "blocking"), ("blocking",)
TRANSPORTS = {
    "py_eshm": (_eshm, _BOTH, _ANY, ["eshm"], "eshm: ESHM.write() / read()"),
    "py_eshm_batch": (_eshm, _STREAM, _ANY, ["eshm"], "eshm: write_many() / read_many()"),
    "py_ctypes": (_ctypes, _BOTH, _ANY, [], "libeshm.so's eshm_write() / eshm_read() through ctypes"),
    "py_pipe": (_pipe, _BOTH, _ANY, [], "multiprocessing.Pipe: send_bytes() / recv_bytes()"),
    "py_queue": (_queue, _BOTH, _ANY, [], "multiprocessing.Queue: put() / get()"),
    "py_faster_fifo": (functools.partial(_queue, faster=True), _BOTH, _ANY, ["faster_fifo"],
                       "faster_fifo.Queue: put() / get()"),
    "py_zmq": (_zmq, _BOTH, _ANY, ["zmq"], "pyzmq PAIR over ipc://"),
    "py_iceoryx2": (_iceoryx2, _BOTH, _ANY, ["iceoryx2"], "iceoryx2 publish-subscribe (Python binding)"),
    "py_eshm_array": (_eshm_array, _STREAM, _BLOCKING, ["eshm", "numpy"], "float32 arrays: write_array() / "
                      "read_array()"),
    "py_eshm_array_view": (functools.partial(_eshm_array, view=True), _STREAM, _BLOCKING, ["eshm", "numpy"],
                           "float32 arrays: write_array() / recv_array() (in place)"),
    "py_shm_pipe_array": (_shm_pipe_array, _STREAM, _BLOCKING, ["numpy"],
                          "float32 arrays: multiprocessing.shared_memory slots + Pipe"),
    "py_zmq_array": (_zmq_array, _STREAM, _BLOCKING, ["numpy", "zmq"], "float32 arrays: pyzmq copy=False"),
    "py_eshm_read_async": (functools.partial(_asyncio, how="read_async"), _PINGPONG, _BLOCKING, ["eshm"],
                           "asyncio client: await read_async()"),
    "py_eshm_to_thread": (functools.partial(_asyncio, how="to_thread"), _PINGPONG, _BLOCKING, ["eshm"],
                          "asyncio client: await asyncio.to_thread(read)"),
    "py_zmq_asyncio": (functools.partial(_asyncio, how="zmq"), _PINGPONG, _BLOCKING, ["zmq"],
                       "asyncio client: zmq.asyncio PAIR over ipc://"),
}
_ARRAYS = {"py_eshm_array", "py_eshm_array_view", "py_shm_pipe_array", "py_zmq_array"}
_ASYNC = {"py_eshm_read_async", "py_eshm_to_thread", "py_zmq_asyncio"}


def unavailable_reason(name):
    """Why transport `name` cannot run here, or "" when it can."""
    for module in TRANSPORTS[name][3]:
        try:
            __import__(module)
        except ImportError:
            return f"{name}: {module} is not importable (pip install {module.replace('_', '-')})"
    if name == "py_ctypes" and not os.path.isfile(os.environ.get("ESHM_LIBESHM", "")):
        return "py_ctypes: $ESHM_LIBESHM does not name libeshm.so (bazel build --config=bench //eshm:libeshm.so)"
    return ""


# ---- The two sides ----


def _phases(o):
    """(seconds, messages or 0, marker) of the warm-up and the measured phase."""
    return ((o.warmup_s, 0, _WARM_END), (o.duration_s, o.messages, _END))


def _stream_writer(end, o):
    """Writes both phases; returns how many messages the measured one sent. The clock is read every 64
    messages: the loop around the call is part of what is measured, so it is kept to a bare call."""
    msg, clock = b"x" * o.size, time.perf_counter
    if o.peer == "py_eshm_batch":
        batch, send_many = [msg] * 256, end.send_many

        def send_group():
            return send_many(batch, timeout_ms=30000)
    else:
        send = end.send

        def send_group():
            for _ in range(64):
                send(msg)
            return 64
    for seconds, count, marker in _phases(o):
        sent = 0
        if count:
            if o.peer == "py_eshm_batch":
                while sent < count:
                    sent += send_many(batch[:count - sent], timeout_ms=30000)
            else:
                for _ in range(count):
                    send(msg)
                sent = count
        elif seconds > 0:
            stop = clock() + seconds
            while True:
                sent += send_group()
                if clock() >= stop:
                    break
        end.send(marker)
    return sent


def _stream_reader(end, o):
    """Reads past the warm-up marker, then counts messages up to the end marker: (messages, seconds)."""
    size, clock = o.size, time.perf_counter
    if o.peer == "py_eshm_batch":
        # Per batch, not per message (the loop is part of what is measured): the warm-up marker may sit
        # anywhere in a batch; the end marker is always last, nothing being sent after it.
        recv_many = end.recv_many
        while True:
            ms = recv_many(1024, 30000)
            if _WARM_END in ms:
                t0, ms = clock(), ms[ms.index(_WARM_END) + 1:]
                break
        n = 0
        while not ms or len(ms[-1]) == size:
            n += len(ms)
            ms = recv_many(1024, 30000)
        if ms[-1] != _END:
            raise RuntimeError(f"a message of {len(ms[-1])} bytes (expected {size})")
        return n + len(ms) - 1, clock() - t0
    recv = end.recv
    while True:
        m = recv()
        if len(m) != size:
            break
    if m != _WARM_END:
        raise RuntimeError(f"a message of {len(m)} bytes (expected {size})")
    t0, n = clock(), 0
    while True:
        m = recv()
        if len(m) != size:
            break
        n += 1
    if m != _END:
        raise RuntimeError(f"a message of {len(m)} bytes (expected {size})")
    return n, clock() - t0


def _array_writer(end, o):
    """Sends arrays in turn (the first element: the sequence number modulo 1000) for both phases; a marker is
    a 1-element array. Returns how many the measured phase sent."""
    import numpy as np

    arrays = [np.arange(o.size // 4, dtype=np.float32) for _ in range(2 * ARRAY_SLOTS)]
    before_refill = getattr(end, "before_refill", None)
    k = 0
    for seconds, count, marker in _phases(o):
        sent, stop = 0, time.perf_counter() + seconds
        while count == 0 and seconds > 0 or sent < count:
            a = arrays[k % len(arrays)]
            k += 1
            if before_refill is not None:
                before_refill(a)
            a[0] = sent % 1000
            end.send(a)
            sent += 1
            if not count and sent % 8 == 0 and time.perf_counter() >= stop:
                break
        end.send(np.full(1, 1 if marker == _END else 0, np.float32))
    return sent


def _array_reader(end, o):
    while end.recv()[1] == o.size:
        pass
    t0, n = time.perf_counter(), 0
    while True:
        first, nbytes = end.recv()
        if nbytes != o.size:
            return n, time.perf_counter() - t0
        if first != n % 1000:
            raise RuntimeError(f"array {n} carries {first}: arrays lost, reordered or overwritten")
        n += 1


def _pingpong_client(end, o):
    """Round trips of both phases; returns the measured phase's, in nanoseconds."""
    msg, size, now, send, recv = b"x" * o.size, o.size, time.perf_counter_ns, end.send, end.recv
    samples = array.array("Q")
    for phase, (seconds, count, _) in enumerate(_phases(o)):
        record = samples.append if phase == 1 else (lambda ns: None)
        stop = now() + int(seconds * 1e9)
        t = now()
        for _ in (range(count) if count else iter(int, 1)):  # count round trips, or until the clock says
            send(msg)
            if len(recv()) != size:
                raise RuntimeError("an echo of the wrong size")
            t2 = now()
            record(t2 - t)
            t = t2
            if not count and t >= stop:
                break
    send(_END)
    return samples


async def _async_client(end, o):
    msg, now = b"x" * o.size, time.perf_counter_ns
    samples = array.array("Q")
    for phase, (seconds, count, _) in enumerate(_phases(o)):
        done, stop = 0, now() + int(seconds * 1e9)
        t = now()
        while count == 0 and t < stop or done < count:
            sent = end.send(msg)
            if getattr(end, "awaits_send", False):
                await sent
            if len(await end.recv()) != o.size:
                raise RuntimeError("an echo of the wrong size")
            t2 = now()
            if phase == 1:
                samples.append(t2 - t)
            t, done = t2, done + 1
    sent = end.send(_END)
    if getattr(end, "awaits_send", False):
        await sent
    return samples


def _echo(end, o):
    send, recv = end.send, end.recv
    while True:
        m = recv()
        if len(m) != o.size:
            return 0, 0.0
        send(m)


def _pin(cpus, side):
    if cpus is not None:
        os.sched_setaffinity(0, {cpus[side]})


def run_peer(o):
    """One run of transport o.peer, both processes: (messages, seconds, round-trip samples or None)."""
    factory, modes, waits = TRANSPORTS[o.peer][:3]
    if o.mode not in modes or o.wait not in waits:
        raise Unsupported(f"{o.peer} runs only {' and '.join(modes)}, with {' or '.join(waits)} waits")
    if o.peer in _ARRAYS and o.size % 4:
        raise Unsupported(f"{o.peer}: float32 arrays take sizes that are multiples of 4, not {o.size}")
    reason = unavailable_reason(o.peer)
    if reason:
        raise Unsupported(reason)
    open_parent, open_child, cleanup = factory(o)
    stream = o.mode == "stream"
    if o.peer in _ARRAYS:
        parent_side, child_side = _array_writer, _array_reader
    elif o.peer in _ASYNC:
        import asyncio

        parent_side, child_side = (lambda end, o: asyncio.run(_async_client(end, o))), _echo
    else:
        parent_side, child_side = (_stream_writer, _stream_reader) if stream else (_pingpong_client, _echo)
    parent_first = o.peer.startswith("py_eshm")  # an eshm master exists before its slave attaches
    parent_end = open_parent() if parent_first else None
    to_parent, to_child = multiprocessing.Pipe()
    pid = os.fork()
    if pid == 0:  # the child: opens its end, runs its side, reports, waits until the parent is done
        code = 0
        try:
            _pin(o.cpus, 1)
            end = open_child()
            to_parent.send("ready")
            to_parent.send(("ok", child_side(end, o)))
            to_parent.poll(60)
            end.close()
        except BaseException as e:  # reported to the parent, which fails the run
            to_parent.send(("error", f"{type(e).__name__}: {e}"))
            code = 1
        finally:
            os._exit(code)
    finished = False
    try:
        _pin(o.cpus, 0)
        if parent_end is None:
            parent_end = open_parent()
        first = to_child.recv() if to_child.poll(60) else ("error", "it did not start within 60 s")
        if first != "ready":
            raise RuntimeError(f"{o.peer}: the child process failed: {first[1]}")
        result = parent_side(parent_end, o)
        if not to_child.poll(120):
            raise RuntimeError(f"{o.peer}: the child process did not finish")
        status, child_result = to_child.recv()
        if status != "ok":
            raise RuntimeError(f"{o.peer}: the child process failed: {child_result}")
        to_child.send("done")
        finished = True
        if stream:
            n, seconds = child_result
            if n != result:
                raise RuntimeError(f"{o.peer}: the writer sent {result} messages, the reader counted {n}")
            return n, seconds, None
        return len(result), sum(result) / 1e9, result
    finally:
        if not finished:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        if parent_end is not None:
            parent_end.close()
        if cleanup is not None:
            cleanup()


# ---- Command line ----


def _parse_peer(argv):
    ap = argparse.ArgumentParser(prog="python -m eshm.bench --peer=NAME")
    ap.add_argument("--peer", required=True, choices=sorted(TRANSPORTS))
    ap.add_argument("--mode", choices=["stream", "pingpong"], required=True)
    ap.add_argument("--wait", choices=["spin", "blocking"], required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--warmup_s", type=float, default=0.1)
    ap.add_argument("--duration_s", type=float, default=1.0)
    ap.add_argument("--messages", type=int, default=0, help="measured messages (0: --duration_s)")
    ap.add_argument("--eshm_wait", choices=["sleep", "adaptive"], default="sleep",
                    help="eshm's blocking waits (spin runs spin)")
    ap.add_argument("--cpus", default=None, help="A,B: the parent on A, the child on B")
    ap.add_argument("--samples", default=None, help="pingpong: where the round trips go")
    o = ap.parse_args(argv)
    if o.cpus:
        o.cpus = [int(c) for c in o.cpus.split(",")]
        if len(o.cpus) != 2:
            ap.error("--cpus takes two CPU numbers: A,B")
    if o.size < 8 or o.messages < 0 or o.warmup_s < 0 or (o.duration_s <= 0 and not o.messages):
        ap.error("--size must be >= 8, --messages and --warmup_s >= 0, --duration_s > 0")
    if o.mode == "pingpong" and not o.samples:
        ap.error("pingpong needs --samples=PATH")
    return o


def _find_tool(argv):
    for i, arg in enumerate(argv):
        if arg.startswith("--eshm-bench="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")  # Bazel's runfiles
    candidates = [os.environ.get("ESHM_BENCH"), shutil.which("eshm-bench"),
                  os.path.join(beside, "benchmarks", "eshm_bench", "eshm-bench"),
                  os.path.join("bazel-bin", "benchmarks", "eshm_bench", "eshm-bench")]
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    return (os.path.normpath(found) if found else None), argv


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--peer-list"]:
        for name in TRANSPORTS:
            print(f"{name}\t{unavailable_reason(name) or 'ok'}\t{TRANSPORTS[name][4]}")
        return 0
    if any(a.startswith("--peer") for a in argv):
        o = _parse_peer(argv)
        try:
            messages, seconds, samples = run_peer(o)
        except Unsupported as e:
            print(e, file=sys.stderr)
            return UNSUPPORTED
        if samples is not None:
            with open(o.samples, "wb") as f:
                samples.tofile(f)
        print(f"messages={messages} seconds={seconds:.9f}")
        return 0
    tool, argv = _find_tool(argv)
    if tool is None or not os.access(tool, os.X_OK):
        print(f"python -m eshm.bench runs eshm-bench, the C++ benchmark tool, and "
              f"{'did not find it' if tool is None else 'found no program at ' + tool}: build it with\n"
              "  bazel build --config=bench //benchmarks:eshm-bench\n"
              "and pass --eshm-bench=bazel-bin/benchmarks/eshm_bench/eshm-bench (or set $ESHM_BENCH).",
              file=sys.stderr)
        return 2
    # The peers eshm-bench starts import this interpreter's eshm, wherever it was found.
    import eshm

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(eshm.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    if not any(a.startswith("--compare") for a in argv):
        argv.append("--compare=python")
    os.execv(tool, [_portable(tool), f"--python={_interpreter_name()}", *argv])


def _portable(path):
    """`path` relative to the working directory when it lies below it: eshm-bench records its argv as the
    command that reproduces a result, which must not name this machine's directories."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _interpreter_name():
    """This interpreter as a command name when PATH finds the same one under it (for the recorded command),
    else its full path."""
    name = os.path.basename(sys.executable)
    found = shutil.which(name)
    same = found is not None and os.path.realpath(found) == os.path.realpath(sys.executable)
    return name if same else sys.executable


if __name__ == "__main__":
    sys.exit(main())
