"""The Python benchmark: eshm between two Python processes, against the usual Python IPC, in one run.

    python -m eshm.bench [--json PATH] [--cpp-bench PATH] [--repetitions N] [--duration S] [--cpus A,B]

Every measurement forks a second process; the two ends talk through the transport under test:

  stream    one-way msg/s, one message per call (write()/read(), send_bytes()/recv_bytes(), put()/get(), ...)
  batch     eshm's write_many()/read_many() (transport "eshm_batch")
  pingpong  round trip latency: the parent sends, the child echoes; every round trip goes into an HDR
            histogram. "spin" polls without sleeping (eshm: ESHM(wait="spin")); "blocking" sleeps in the kernel
            (eshm: ESHM(wait="sleep"), a futex)
  --arrays  instead of all the above: numpy float32 arrays (1 MiB: --array-bytes), one per message, one way:
            eshm write_array() with read_array() (a new array) or recv_array() (in place), against
            multiprocessing.shared_memory plus a Pipe (slots, in place) and pyzmq send/recv(copy=False)
  --asyncio instead of all the above: round trip latency seen by an asyncio client (the child echoes with
            blocking calls): eshm `await read_async()`, eshm `await asyncio.to_thread(read)`, and pyzmq's
            zmq.asyncio PAIR over ipc://, repetitions interleaved; eshm against an echo that waits adaptively
            (the default) and one that sleeps (wait="sleep"), the client with its default wait
  64 KiB    one-way GB/s with 64 KiB messages; eshm against the C++ engine's own tool when --cpp-bench (or
            $ESHM_BENCH_CPP) names it: `PATH --mode=stream --sizes=65536 --wait=spin --duration_s=2 --json=-`
            (and, for information, its spin round trip: `--mode=pingpong --sizes=SIZE`, same other flags)

The stream measurements use each transport's blocking calls (eshm: the default adaptive wait). Each
measurement is repeated; the table shows the median repetition. Comparisons that cannot be imported
(faster-fifo, pyzmq, iceoryx2) are skipped with a note. Numbers on a shared or virtual machine move a lot between runs:
read ratios measured in the same run, not absolute figures from different runs.
"""

import argparse
import functools
import json
import multiprocessing
import os
import platform
import queue as queue_module
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

SCHEMA = "eshm-bench/2"
TOOL = "eshm.bench"
KIB64 = 64 * 1024

# Markers that end a phase: a message of a length the measured messages never have.
_WARM_END = b"W"
_END = b"E"

# What the report checks the results against.
TARGETS = {
    "single_msgs_per_s": 1.5e6,
    "single_vs_pipe": 6.0,
    "batch_msgs_per_s": 8e6,
    "spin_rt_p50_ns": 3000.0,
    "spin_rt_vs_pipe": 20.0,
    "kib64_vs_cpp": 0.5,
}


# ---- Transports: each gives the two ends of one connection, made in the parent or in each process ----


class _End:
    """One end of a connection. send()/recv() move one message (bytes); recv() blocks, or spins if asked."""

    def open(self):  # runs in the process that uses this end, after fork()
        pass

    def close(self):
        pass


class _EshmEnd(_End):
    def __init__(self, name, master, wait, size):
        self.name, self.master, self.wait, self.size, self.ch = name, master, wait, size, None

    def open(self):
        import eshm

        role = eshm.ESHMRole.MASTER if self.master else eshm.ESHMRole.SLAVE
        # Rings of 4 MiB: room for a few dozen 64 KiB messages in flight.
        self.ch = eshm.ESHM(self.name, role=role, m2s_capacity=1 << 22, s2m_capacity=1 << 22, wait=self.wait,
                            max_reconnect_attempts=100, reconnect_retry_interval_ms=10)
        # The bound methods with their defaults, as an application calls them (the 1 s default timeout is
        # never reached: the other process sends continuously; read()'s buffer_size is 4096 by default).
        # The 64 KiB stream goes through read_into().
        ch = self.ch
        self.send = ch.write
        self.recv = ch.read if self.size <= 4096 else functools.partial(ch.read, self.size)
        self.send_many = ch.write_many
        self.recv_many = ch.read_many
        self.read_into = ch.read_into

    def close(self):
        if self.ch is not None:
            self.ch.close()


class _PipeEnd(_End):
    def __init__(self, conn, other, spin):
        self.conn, self.other, self.spin = conn, other, spin

    def open(self):
        self.other.close()
        conn = self.conn
        self.send = conn.send_bytes
        if self.spin:
            poll, recv = conn.poll, conn.recv_bytes

            def spin_recv():
                while not poll():
                    pass
                return recv()

            self.recv = spin_recv
        else:
            self.recv = conn.recv_bytes

    def close(self):
        self.conn.close()


class _QueueEnd(_End):
    """multiprocessing.Queue and faster_fifo.Queue: one queue per direction."""

    def __init__(self, out_q, in_q, spin):
        self.out_q, self.in_q, self.spin = out_q, in_q, spin

    def open(self):
        self.send = self.out_q.put
        if self.spin:
            get, empty = self.in_q.get_nowait, queue_module.Empty

            def spin_recv():
                while True:
                    try:
                        return get()
                    except empty:
                        pass

            self.recv = spin_recv
        else:
            self.recv = self.in_q.get

    def close(self):
        pass


class _ZmqEnd(_End):
    def __init__(self, address, bind, spin, hwm):
        self.address, self.bind, self.spin, self.hwm = address, bind, spin, hwm

    def open(self):
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PAIR)
        self.sock.setsockopt(zmq.SNDHWM, self.hwm)
        self.sock.setsockopt(zmq.RCVHWM, self.hwm)
        self.sock.setsockopt(zmq.LINGER, 1000)
        (self.sock.bind if self.bind else self.sock.connect)(self.address)
        sock = self.sock
        self.send = lambda m: sock.send(m, copy=False) if len(m) > 4096 else sock.send(m)
        if self.spin:
            recv, again, noblock = sock.recv, zmq.Again, zmq.NOBLOCK

            def spin_recv():
                while True:
                    try:
                        return recv(noblock)
                    except again:
                        pass

            self.recv = spin_recv
        else:
            self.recv = sock.recv

    def close(self):
        self.sock.close()
        self.ctx.term()
        if self.bind:
            try:
                os.unlink(self.address[len("ipc://"):])
            except FileNotFoundError:
                pass


class _Iceoryx2End(_End):
    """iceoryx2 (its Python binding): one publish-subscribe service per direction over its IPC service type,
    with byte-slice payloads loaned from the publisher's shared memory, filled in place and sent (zero-copy
    between the processes; the bytes are copied into the loan and out of the received sample, as with eshm's
    write()/read()). A full subscriber buffer makes the publisher wait (no message is dropped). "blocking"
    adds one event service per direction: the sender notifies after each message and the receiver, finding
    nothing, sleeps in the listener's blocking_wait()."""

    def __init__(self, prefix, first, spin, size, depth):
        self.prefix, self.first, self.spin, self.size, self.depth = prefix, first, spin, size, depth
        self.node = self.pub = self.sub = self.notifier = self.listener = None
        self.services = []

    def open(self):
        import ctypes

        import iceoryx2 as iox

        iox.set_log_level(iox.LogLevel.Error)
        # Without a signal handler of its own: the benchmark's SIGTERM handler stays in charge.
        self.node = (iox.NodeBuilder.new().signal_handling_mode(iox.SignalHandlingMode.Disabled)
                     .create(iox.ServiceType.Ipc))
        out_dir, in_dir = ("a", "b") if self.first else ("b", "a")

        def pubsub(direction):
            name = iox.ServiceName.new(f"{self.prefix}/{direction}")
            service = (self.node.service_builder(name).publish_subscribe(iox.Slice[ctypes.c_uint8])
                       .subscriber_max_buffer_size(self.depth).history_size(0).enable_safe_overflow(False)
                       .max_publishers(1).max_subscribers(1).open_or_create())
            self.services.append(service)
            return service

        def event(direction):
            name = iox.ServiceName.new(f"{self.prefix}/{direction}/event")
            service = self.node.service_builder(name).event().max_notifiers(1).max_listeners(1).open_or_create()
            self.services.append(service)
            return service

        self.pub = (pubsub(out_dir).publisher_builder().initial_max_slice_len(self.size)
                    .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered).create())
        self.sub = pubsub(in_dir).subscriber_builder().buffer_size(self.depth).create()
        if not self.spin:
            self.notifier = event(out_dir).notifier_builder().create()
            self.listener = event(in_dir).listener_builder().create()

        loan, memmove, string_at = self.pub.loan_slice_uninit, ctypes.memmove, ctypes.string_at
        receive = self.sub.receive
        notify = self.notifier.notify if self.notifier is not None else None

        def send(m):
            sample = loan(len(m))
            memmove(sample.payload_ptr, m, len(m))
            sample.assume_init().send()
            if notify is not None:
                notify()

        def take(sample):
            m = string_at(sample.payload_ptr, sample.header.number_of_elements)
            sample.delete()  # back to the publisher's pool at once
            return m

        if self.spin:
            def recv():
                while True:
                    sample = receive()
                    if sample is not None:
                        return take(sample)
        else:
            wait = self.listener.blocking_wait

            def recv():
                while True:
                    sample = receive()
                    if sample is not None:
                        return take(sample)
                    # Notifications are kept until collected: one sent after receive() found nothing
                    # wakes this wait.
                    wait()

        self.send, self.recv = send, recv

    def close(self):
        for port in (self.pub, self.sub, self.notifier, self.listener):
            if port is not None:
                port.delete()
        self.pub = self.sub = self.notifier = self.listener = None
        # The last owner's service and node objects going away removes the services' shared memory.
        self.services = []
        self.node = None


def _faster_fifo():
    try:
        import faster_fifo

        return faster_fifo
    except ImportError:
        return None


def _zmq():
    try:
        import zmq

        return zmq
    except ImportError:
        return None


def _iceoryx2():
    try:
        import iceoryx2

        return iceoryx2
    except ImportError:
        return None


def transports():
    """(name, available, note) of every transport, in table order."""
    out = [("eshm", True, ""), ("eshm_batch", True, ""), ("multiprocessing.Pipe", True, ""),
           ("multiprocessing.Queue", True, "")]
    out.append(("faster-fifo", _faster_fifo() is not None, "" if _faster_fifo() else
                "faster_fifo is not importable (pip install faster-fifo)"))
    out.append(("pyzmq", _zmq() is not None, "" if _zmq() else "zmq is not importable (pip install pyzmq)"))
    out.append(("iceoryx2", _iceoryx2() is not None, "" if _iceoryx2() else
                "iceoryx2 is not importable (pip install iceoryx2)"))
    return out


# Every transport buffers about this much between the two processes (eshm's rings are 4 MiB): without a
# bound, multiprocessing.Queue's put() and pyzmq's send() would queue gigabytes in the writer's memory and the
# writer would "send" far faster than anything is delivered.
IN_FLIGHT_BYTES = 4 << 20


def _in_flight_messages(size):
    return max(16, IN_FLIGHT_BYTES // (size + 64))


def make_ends(transport, wait, size, eshm_wait):
    """The (parent, child) ends of a new connection of `transport` for the wait mode ("spin"/"blocking");
    eshm endpoints use the wait strategy eshm_wait ("adaptive", "spin" or "sleep")."""
    spin = wait == "spin"
    if transport in ("eshm", "eshm_batch"):
        name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        return _EshmEnd(name, True, eshm_wait, size), _EshmEnd(name, False, eshm_wait, size)
    if transport == "multiprocessing.Pipe":
        a, b = multiprocessing.Pipe(duplex=True)
        return _PipeEnd(a, b, spin), _PipeEnd(b, a, spin)
    if transport == "multiprocessing.Queue":
        q1, q2 = multiprocessing.Queue(_in_flight_messages(size)), multiprocessing.Queue(_in_flight_messages(size))
        return _QueueEnd(q1, q2, spin), _QueueEnd(q2, q1, spin)
    if transport == "faster-fifo":
        ff = _faster_fifo()
        q1, q2 = ff.Queue(max_size_bytes=IN_FLIGHT_BYTES), ff.Queue(max_size_bytes=IN_FLIGHT_BYTES)
        return _QueueEnd(q1, q2, spin), _QueueEnd(q2, q1, spin)
    if transport == "pyzmq":
        address = f"ipc://{tempfile.gettempdir()}/eshm_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}.ipc"
        hwm = _in_flight_messages(size)
        return _ZmqEnd(address, True, spin, hwm), _ZmqEnd(address, False, spin, hwm)
    if transport == "iceoryx2":
        prefix = f"eshm_bench/{os.getpid()}_{uuid.uuid4().hex[:8]}"
        depth = _in_flight_messages(size)
        return _Iceoryx2End(prefix, True, spin, size, depth), _Iceoryx2End(prefix, False, spin, size, depth)
    raise ValueError(transport)


# ---- numpy arrays (--arrays): one array per message, the receiver gets an ndarray of the sender's dtype/shape ----

# Every array transport keeps about this many arrays in flight between the two processes.
ARRAY_SLOTS = 4
ARRAY_TRANSPORTS = ("eshm_array", "eshm_array_view", "shared_memory+Pipe", "pyzmq_nocopy")


class _ArrayEnd:
    """One end of an array connection: send(a) moves one float32 array, recv() returns its first element (so
    every transport touches what it received) or None for the end-of-phase marker (a 1-element array)."""

    def close(self):
        pass


class _EshmArrayEnd(_ArrayEnd):
    """eshm: write_array() (one copy, into the ring); read_array() (a new array, one copy out of the ring) or,
    "view", recv_array() (in place in the ring, no copy)."""

    def __init__(self, name, master, view, nbytes):
        self.name, self.master, self.view, self.nbytes, self.ch = name, master, view, nbytes, None

    def open(self):
        import eshm

        capacity = (ARRAY_SLOTS + 1) * (self.nbytes + 4096)
        capacity = 1 << (capacity - 1).bit_length()  # rings are powers of two
        self.ch = eshm.ESHM(self.name, role="master" if self.master else "slave", m2s_capacity=capacity,
                            s2m_capacity=capacity, max_reconnect_attempts=100, reconnect_retry_interval_ms=10)
        self.send = self.ch.write_array
        if self.view:
            recv_array = self.ch.recv_array

            def recv():
                with recv_array(timeout_ms=-1) as a:
                    return None if a.size == 1 else float(a[0])
        else:
            read_array = self.ch.read_array

            def recv():
                a = read_array(timeout_ms=-1)
                return None if a.size == 1 else float(a[0])
        self.recv = recv

    def close(self):
        if self.ch is not None:
            self.ch.close()


class _ShmPipeArrayEnd(_ArrayEnd):
    """multiprocessing.shared_memory plus a Pipe, the usual hand-made zero-copy path: ARRAY_SLOTS slots of one
    array in a SharedMemory block; the sender copies the array into a free slot and sends the slot's number
    through the Pipe (send_bytes, 8 bytes); the receiver wraps the slot in an ndarray (no copy), reads it and
    sends the slot back as free through a second Pipe."""

    def __init__(self, shm, data, free, sender, nbytes):
        self.shm, self.data, self.free, self.sender, self.nbytes = shm, data, free, sender, nbytes

    def open(self):
        import struct

        import numpy as np

        shm, nbytes = self.shm, self.nbytes
        slot = struct.Struct("<q")
        if self.sender:
            data, free = self.data, self.free
            in_flight = [0]

            def send(a):
                if in_flight[0] == ARRAY_SLOTS:
                    if not free.poll(30):
                        raise RuntimeError("shared_memory+Pipe: the receiver freed no slot for 30 s")
                    free.recv_bytes()
                    in_flight[0] -= 1
                i = send.next
                send.next = (i + 1) % ARRAY_SLOTS
                if a.size == 1:
                    data.send_bytes(slot.pack(-1))
                    return
                np.copyto(np.ndarray(a.shape, a.dtype, buffer=shm.buf, offset=i * nbytes), a)
                in_flight[0] += 1
                data.send_bytes(slot.pack(i))

            send.next = 0
            self.send = send
        else:
            data, free = self.data, self.free
            count = nbytes // 4

            def recv():
                i = slot.unpack(data.recv_bytes())[0]
                if i < 0:
                    return None
                a = np.ndarray((count,), np.float32, buffer=shm.buf, offset=i * nbytes)
                first = float(a[0])
                del a
                free.send_bytes(b"")
                return first

            self.recv = recv

    def close(self):
        self.shm.close()
        self.data.close()
        self.free.close()


class _ZmqArrayEnd(_ArrayEnd):
    """pyzmq over ipc://: send(a, copy=False, track=True) (no copy in Python: zmq sends from the array's
    memory, and the sender waits for the tracker before it refills that array) and recv(copy=False), wrapped
    with np.frombuffer (no copy in Python; the kernel copies through the socket)."""

    def __init__(self, address, bind):
        self.address, self.bind = address, bind

    def open(self):
        import numpy as np
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH if self.bind else zmq.PULL)
        self.sock.setsockopt(zmq.SNDHWM if self.bind else zmq.RCVHWM, ARRAY_SLOTS)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDTIMEO, 30_000)  # a dead receiver fails the run instead of hanging it
        (self.sock.bind if self.bind else self.sock.connect)(self.address)
        sock = self.sock
        trackers = {}

        def send(a):
            sent = trackers.pop(id(a), None)
            if sent is not None:
                sent.wait(30)
            trackers[id(a)] = sock.send(a, copy=False, track=True)

        self.send = send
        self.before_refill = lambda a: (trackers.pop(id(a)).wait(30) if id(a) in trackers else None)

        def recv():
            frame = sock.recv(copy=False)
            a = np.frombuffer(frame.buffer, np.float32)
            return None if a.size == 1 else float(a[0])

        self.recv = recv

    def close(self):
        self.sock.close()
        self.ctx.term()
        if self.bind:
            try:
                os.unlink(self.address[len("ipc://"):])
            except FileNotFoundError:
                pass


def make_array_ends(transport, nbytes):
    """The (sender, receiver) ends of a new array connection of `transport`."""
    if transport in ("eshm_array", "eshm_array_view"):
        name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        view = transport == "eshm_array_view"
        return _EshmArrayEnd(name, True, view, nbytes), _EshmArrayEnd(name, False, view, nbytes)
    if transport == "shared_memory+Pipe":
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(create=True, size=ARRAY_SLOTS * nbytes)
        data_r, data_w = multiprocessing.Pipe(duplex=False)
        free_r, free_w = multiprocessing.Pipe(duplex=False)
        return (_ShmPipeArrayEnd(shm, data_w, free_r, True, nbytes),
                _ShmPipeArrayEnd(shm, data_r, free_w, False, nbytes))
    if transport == "pyzmq_nocopy":
        address = f"ipc://{tempfile.gettempdir()}/eshm_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}.ipc"
        return _ZmqArrayEnd(address, True), _ZmqArrayEnd(address, False)
    raise ValueError(transport)


def array_transports():
    """(name, available, note) of every array transport (numpy is needed by all of them)."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return [(t, False, "numpy is not importable (pip install numpy)") for t in ARRAY_TRANSPORTS]
    zmq_ok = _zmq() is not None
    return [(t, True, "") if t != "pyzmq_nocopy" else
            (t, zmq_ok, "" if zmq_ok else "zmq is not importable (pip install pyzmq)") for t in ARRAY_TRANSPORTS]


def _array_reader(end):
    """Receives until the warm-up marker, then counts arrays (checking their sequence numbers) until the end
    marker: (arrays, seconds)."""
    clock = time.perf_counter
    recv = end.recv
    while recv() is not None:
        pass
    t0 = clock()
    n = 0
    while True:
        first = recv()
        if first is None:
            return n, clock() - t0
        if first != n % 1000:
            raise RuntimeError(f"array {n} carries {first}: arrays lost, reordered or overwritten")
        n += 1


def _array_writer(end, arrays, warmup_s, duration_s):
    """Sends the arrays in turn (each with its first element set to the sequence number) for warmup_s, a
    marker, for duration_s, the end marker; returns how many it sent in the measured phase. A transport that
    sends from the array's own memory (pyzmq's copy=False) says when an array may be refilled."""
    import numpy as np

    marker = np.zeros(1, np.float32)
    clock = time.perf_counter
    send = end.send
    before_refill = getattr(end, "before_refill", None)
    k = 0
    for phase_s, measured in ((warmup_s, False), (duration_s, True)):
        sent = 0
        stop = clock() + phase_s
        while True:
            for _ in range(8):
                array = arrays[k % len(arrays)]
                k += 1
                if before_refill is not None:
                    before_refill(array)
                array[0] = sent % 1000 if measured else 0
                send(array)
                sent += 1
            if clock() >= stop:
                break
        send(marker)
    return sent


def _array_child(end, cpu, ctl):
    try:
        _pin(cpu)
        end.open()
        ctl.send("ready")
        ctl.send(("ok", _array_reader(end)))
        ctl.recv()
        end.close()
    except BaseException as e:
        ctl.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        ctl.close()


def _run_array_pair(transport, nbytes, opts):
    """One repetition of one array transport: (arrays, seconds)."""
    import numpy as np

    ctx = multiprocessing.get_context("fork")
    sender, receiver = make_array_ends(transport, nbytes)
    ctl_parent, ctl_child = ctx.Pipe()
    cpus = opts.cpus or (None, None)
    if transport.startswith("eshm"):
        sender.open()  # the master exists before its slave attaches
    proc = ctx.Process(target=_array_child, args=(receiver, cpus[1], ctl_child), daemon=True)
    proc.start()
    ctl_child.close()
    try:
        _pin(cpus[0])
        if not transport.startswith("eshm"):
            sender.open()
        if not ctl_parent.poll(30) or ctl_parent.recv() != "ready":
            raise RuntimeError(f"{transport}: the child process did not start")
        # A few source arrays in turn, as a producer filling buffers would (and as zero-copy senders need).
        arrays = [np.arange(nbytes // 4, dtype=np.float32) for _ in range(2 * ARRAY_SLOTS)]
        sent = _array_writer(sender, arrays, opts.warmup, opts.duration)
        if not ctl_parent.poll(60):
            raise RuntimeError(f"{transport}: the child process did not finish")
        status, result = ctl_parent.recv()
        if status != "ok":
            raise RuntimeError(f"{transport}: the child process failed: {result}")
        ctl_parent.send("done")
        proc.join(30)
        n, seconds = result
        # The warm-up marker is the first array the reader does not count; each phase sends whole groups.
        if n != sent:
            raise RuntimeError(f"{transport}: sent {sent} arrays, the reader counted {n}")
        return n, seconds
    finally:
        _pin_all()
        if proc.is_alive():
            proc.kill()
            proc.join()
        sender.close()
        if transport == "shared_memory+Pipe":
            sender.shm.unlink()
        ctl_parent.close()


def measure_arrays(transports_, nbytes, opts, log=print):
    """Each array transport opts.repetitions times, interleaved; the median repetition's row of each."""
    runs = {t: [] for t in transports_}
    for rep in range(opts.repetitions):
        log(f"repetition {rep + 1}/{opts.repetitions}")
        for t in transports_:
            n, seconds = _run_array_pair(t, nbytes, opts)
            row = _row(t, "stream", "blocking", nbytes, n, seconds, None)
            runs[t].append((n / seconds, row))
            log(f"  {t:22} {nbytes} B arrays  {row['msgs_per_s']:,.0f} arrays/s  {row['gb_per_s']:.2f} GB/s")
    rows = []
    for t in transports_:
        ordered = sorted(runs[t], key=lambda r: r[0])
        rows.append(ordered[len(ordered) // 2][1])
    return rows


def render_array_table(rows):
    base = next((r for r in rows if r["transport"] == "shared_memory+Pipe"), None)
    lines = [f"{'transport':22} {'array':>12}  {'arrays/s':>10}  {'GB/s':>7}  {'vs shared_memory+Pipe':>22}"]
    for r in rows:
        ratio = _times(r["msgs_per_s"] / base["msgs_per_s"]) if base else "-"
        lines.append(f"{r['transport']:22} {_size_text(r['size']):>12}  {r['msgs_per_s']:>10,.0f}  "
                     f"{r['gb_per_s']:>7.2f}  {ratio:>22}")
    return "\n".join(lines)


def _size_text(n):
    return f"{n // (1 << 20)} MiB float32" if n % (1 << 20) == 0 else f"{n} B float32"


# ---- The two sides of each measurement ----


def _pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _stream_writer(end, msg, warmup_s, duration_s, batch):
    """Sends for warmup_s, a marker, then for duration_s, then the end marker; returns how many it sent."""
    send = end.send_many if batch else end.send
    item = [msg] * batch if batch else msg
    per_call = batch or 1
    clock = time.perf_counter
    for phase_s, marker in ((warmup_s, _WARM_END), (duration_s, _END)):
        sent = 0
        stop = clock() + phase_s
        while True:
            for _ in range(64):
                send(item)
            sent += 64 * per_call
            if clock() >= stop:
                break
        end.send(marker)
    return sent


def _stream_reader(end, size, batch, into):
    """Reads until the warm-up marker, then counts messages until the end marker: (messages, seconds)."""
    clock = time.perf_counter
    if batch:
        recv_many = end.recv_many
        # A batch may hold the warm-up marker anywhere (what follows it is measured); the end marker is
        # always last, as nothing is sent after it.
        while True:
            ms = recv_many()
            if _WARM_END in ms:
                t0 = clock()
                n = len(ms) - ms.index(_WARM_END) - 1
                break
        if n and ms[-1] == _END:
            return n - 1, clock() - t0
        while True:
            ms = recv_many()
            if len(ms[-1]) != size:
                n += len(ms) - 1
                break
            n += len(ms)
        return n, clock() - t0
    if into:
        buf = bytearray(size)
        read_into = end.read_into
        while read_into(buf) == size:
            pass
        t0 = clock()
        n = 0
        while read_into(buf) == size:
            n += 1
        return n, clock() - t0
    recv = end.recv
    while len(recv()) == size:
        pass
    t0 = clock()
    n = 0
    while len(recv()) == size:
        n += 1
    return n, clock() - t0


def _pingpong_client(end, msg, warmup_s, duration_s):
    """Sends, waits for the echo, records each round trip in ns: returns the list of round trips."""
    send, recv, now = end.send, end.recv, time.perf_counter_ns
    stop = now() + int(warmup_s * 1e9)
    while now() < stop:
        send(msg)
        recv()
    samples = []
    record = samples.append
    stop = now() + int(duration_s * 1e9)
    t = now()
    while t < stop:
        send(msg)
        recv()
        t2 = now()
        record(t2 - t)
        t = t2
    send(_END)
    return samples


def _pingpong_server(end, size):
    send, recv = end.send, end.recv
    while True:
        m = recv()
        if len(m) != size:
            return
        send(m)


def _child_main(kind, end, args, cpu, ctl):
    """The forked process: opens its end, says ready, runs its side, sends its result back on ctl."""
    try:
        _pin(cpu)
        end.open()
        ctl.send("ready")
        if kind == "stream":
            result = _stream_reader(end, *args)
        else:
            result = _pingpong_server(end, *args)
        ctl.send(("ok", result))
        ctl.recv()  # the parent's end stays open until the child's result is in
        end.close()
    except BaseException as e:  # reported to the parent, which fails the measurement
        ctl.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        ctl.close()


def _run_pair(transport, wait, kind, size, opts, batch=0, into=False):
    """One repetition: returns (messages, seconds, round_trip_samples_or_None)."""
    ctx = multiprocessing.get_context("fork")
    # eshm: spin rows spin; blocking round trips sleep on the futex at once, like a pipe's reader in the
    # kernel; blocking streams use the default (adaptive) wait that users get.
    eshm_wait = "spin" if wait == "spin" else ("sleep" if kind == "pingpong" else "adaptive")
    parent_end, child_end = make_ends(transport, wait, size, eshm_wait)
    ctl_parent, ctl_child = ctx.Pipe()
    child_args = (size, batch, into) if kind == "stream" else (size,)
    cpus = opts.cpus or (None, None)
    # The child is the reader (stream) or the echo (pingpong); an eshm master must exist before its slave
    # attaches, so the parent opens first for eshm.
    if transport in ("eshm", "eshm_batch"):
        parent_end.open()
    proc = ctx.Process(target=_child_main, args=(kind, child_end, child_args, cpus[1], ctl_child), daemon=True)
    proc.start()
    ctl_child.close()
    try:
        _pin(cpus[0])
        if transport not in ("eshm", "eshm_batch"):
            parent_end.open()
        if not ctl_parent.poll(30) or ctl_parent.recv() != "ready":
            raise RuntimeError(f"{transport}: the child process did not start")
        msg = b"x" * size
        samples = None
        if kind == "stream":
            sent = _stream_writer(parent_end, msg, opts.warmup, opts.duration, batch)
        else:
            samples = _pingpong_client(parent_end, msg, opts.warmup, opts.duration)
        if not ctl_parent.poll(60):
            raise RuntimeError(f"{transport}: the child process did not finish")
        status, result = ctl_parent.recv()
        if status != "ok":
            raise RuntimeError(f"{transport}: the child process failed: {result}")
        ctl_parent.send("done")
        proc.join(30)
        if kind == "stream":
            n, seconds = result
            if n != sent:
                raise RuntimeError(f"{transport}: sent {sent} messages, the reader counted {n}")
            return n, seconds, None
        return len(samples), sum(samples) / 1e9, samples
    finally:
        _pin_all()
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent_end.close()
        ctl_parent.close()


def _pin_all():
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except OSError:
        pass


# ---- Statistics and the report ----


def latency_summary(samples):
    """min, mean, percentiles and max of round trips in ns, from an HDR histogram (3 significant digits)."""
    keys = ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99)
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        HdrHistogram = None
    if HdrHistogram is not None:
        h = HdrHistogram(1, 60 * 10**9, 3)
        for v in samples:
            h.record_value(max(1, v))
        out = {"min": float(h.get_min_value()), "mean": float(h.get_mean_value())}
        for k, p in keys:
            out[k] = float(h.get_value_at_percentile(p))
        out["max"] = float(h.get_max_value())
        return out
    # Without hdrhistogram: exact percentiles of the sorted samples (nearest rank).
    s = sorted(samples)
    out = {"min": float(s[0]), "mean": float(statistics.fmean(s))}
    for k, p in keys:
        out[k] = float(s[min(len(s) - 1, int(len(s) * p / 100.0))])
    out["max"] = float(s[-1])
    return out


def _row(transport, mode, wait, size, messages, seconds, latency):
    rate = messages / seconds if seconds > 0 else 0.0
    return {
        "transport": transport,
        "mode": mode,
        "wait": wait,
        "size": size,
        "messages": messages,
        "seconds": seconds,
        "msgs_per_s": rate,
        "gb_per_s": rate * size / 1e9,
        "latency_ns": latency,
        "latency_kind": "round_trip" if latency is not None else None,
        "floor": None,
        "ratio_to_floor": None,
        "baseline": None,
        "ratio_to_baseline": None,
        "futex_calls_per_message": None,
    }


def measure_once(spec, opts):
    """One repetition of one measurement: (sort key, row); the key orders repetitions for the median."""
    transport, mode, wait, size, batch, into = spec
    n, seconds, samples = _run_pair(transport, wait, mode, size, opts, batch, into)
    if mode == "pingpong":
        lat = latency_summary(samples)
        return lat["p50"], _row(transport, mode, wait, size, n, seconds, lat)
    return n / seconds, _row(transport, mode, wait, size, n, seconds, None)


def measure_all(specs, opts, log=print):
    """Runs every measurement opts.repetitions times and returns the median repetition's row of each.

    The repetitions are interleaved (all measurements once, then again...), so a burst of load from
    elsewhere on the machine lands on every transport alike instead of on whichever ran at that moment.
    """
    runs = [[] for _ in specs]
    for rep in range(opts.repetitions):
        log(f"repetition {rep + 1}/{opts.repetitions}")
        for spec, spec_runs in zip(specs, runs):
            key, row = measure_once(spec, opts)
            spec_runs.append((key, row))
            transport, mode, wait, size = spec[:4]
            log(f"  {transport:22} {mode:8} {wait:8} {size:6} B  " + _describe(row))
    rows = []
    for spec_runs in runs:
        spec_runs.sort(key=lambda r: r[0])
        rows.append(spec_runs[len(spec_runs) // 2][1])
    return rows


def _describe(row):
    if row["latency_ns"]:
        lat = row["latency_ns"]
        return f"RT p50 {lat['p50'] / 1000:.2f} us  p99 {lat['p99'] / 1000:.2f} us  ({row['messages']} round trips)"
    if row["size"] >= KIB64:
        return f"{row['gb_per_s']:.3f} GB/s ({row['msgs_per_s']:,.0f} msg/s)"
    return f"{row['msgs_per_s']:,.0f} msg/s"


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            clocksource = f.read().strip()
    except OSError:
        clocksource = ""
    return {"cpu_model": cpu or platform.processor(), "logical_cpus": os.cpu_count() or 0,
            "kernel": platform.release(), "clocksource": clocksource, "hostname": socket.gethostname()}


def run_cpp_bench(path, mode="stream", size=KIB64):
    """One spin measurement of the C++ engine by its own tool (eshm-bench): (results[0], command) or
    (None, reason). The stream at 64 KiB is the comparison the targets name; a round trip at the Python
    run's size is shown for information."""
    cmd = [path, f"--mode={mode}", f"--sizes={size}", "--wait=spin", "--duration_s=2", "--json=-"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{' '.join(cmd)} failed: {e}"
    if done.returncode != 0:
        return None, f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.strip()[-300:]}"
    # The JSON document may share stdout with the tool's table (before or after it): decode the first
    # document that starts a line.
    decoder = json.JSONDecoder()
    error = "no JSON document on its stdout"
    out = done.stdout
    for start in [0] + [i + 1 for i, c in enumerate(out) if c == "\n"]:
        if not out.startswith("{", start):
            continue
        try:
            doc, _ = decoder.raw_decode(out, start)
            row = doc["results"][0]
            if mode == "stream":
                row["gb_per_s"] = float(row["gb_per_s"])
            else:
                row["latency_ns"] = {k: float(v) for k, v in row["latency_ns"].items()}
                row["latency_ns"]["p50"]  # required
            return row, " ".join(cmd)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            wanted = "gb_per_s" if mode == "stream" else "latency_ns.p50"
            error = f"no results[0].{wanted} in its JSON ({type(e).__name__}: {e})"
    return None, f"{' '.join(cmd)}: {error}"


def _find(rows, transport, mode, wait, size):
    for r in rows:
        if (r["transport"], r["mode"], r["wait"], r["size"]) == (transport, mode, wait, size):
            return r
    return None


def evaluate(rows, size, cpp_gb_per_s, cpp_round_trip=None):
    """The targets, each as (description, measured text, met: True/False/None for not measured)."""
    out = []
    e = _find(rows, "eshm", "stream", "blocking", size)
    p = _find(rows, "multiprocessing.Pipe", "stream", "blocking", size)
    b = _find(rows, "eshm_batch", "stream", "blocking", size)
    es = _find(rows, "eshm", "pingpong", "spin", size)
    ps = _find(rows, "multiprocessing.Pipe", "pingpong", "spin", size)
    pb = _find(rows, "multiprocessing.Pipe", "pingpong", "blocking", size)
    e64 = _find(rows, "eshm", "stream", "spin", KIB64)

    def check(desc, value, goal, fmt, higher=True):
        if value is None:
            out.append((desc, "not measured", None))
        else:
            out.append((desc, fmt(value), value >= goal if higher else value <= goal))

    check(f"single-call one-way >= {TARGETS['single_msgs_per_s'] / 1e6:g} M msg/s", e and e["msgs_per_s"],
          TARGETS["single_msgs_per_s"], lambda v: f"{v / 1e6:.2f} M msg/s")
    check(f"single-call >= {TARGETS['single_vs_pipe']:g}x multiprocessing.Pipe",
          e and p and e["msgs_per_s"] / p["msgs_per_s"], TARGETS["single_vs_pipe"], _times)
    check(f"write_many/read_many >= {TARGETS['batch_msgs_per_s'] / 1e6:g} M msg/s", b and b["msgs_per_s"],
          TARGETS["batch_msgs_per_s"], lambda v: f"{v / 1e6:.2f} M msg/s")
    check(f"spin round trip p50 <= {TARGETS['spin_rt_p50_ns'] / 1000:g} us", es and es["latency_ns"]["p50"],
          TARGETS["spin_rt_p50_ns"], lambda v: f"{v / 1000:.2f} us", higher=False)
    # Against Pipe's faster round trip of the two (spin-polled or blocking), so the target is not met by
    # choosing the slower comparison.
    pipe_best = min((r["latency_ns"]["p50"] for r in (ps, pb) if r is not None), default=None)
    check(f"spin round trip p50 >= {TARGETS['spin_rt_vs_pipe']:g}x better than Pipe's best p50",
          es and pipe_best and pipe_best / es["latency_ns"]["p50"], TARGETS["spin_rt_vs_pipe"], _times)
    for r, how in ((ps, "spin-polled"), (pb, "blocking")):
        if r is not None and es is not None:
            out.append((f"(info) spin round trip p50 vs Pipe {how}",
                        _times(r['latency_ns']['p50'] / es['latency_ns']['p50']), None))
    if cpp_round_trip is not None and es is not None:
        out.append(("(info) the C++ engine's spin round trip p50 (eshm-bench)",
                    f"{cpp_round_trip['p50'] / 1000:.2f} us (Python {es['latency_ns']['p50'] / 1000:.2f} us)", None))
    check(f"64 KiB one-way >= {TARGETS['kib64_vs_cpp'] * 100:g}% of the C++ engine",
          e64 and cpp_gb_per_s and e64["gb_per_s"] / cpp_gb_per_s, TARGETS["kib64_vs_cpp"],
          lambda v: f"{v * 100:.0f}% ({e64['gb_per_s']:.2f} vs {cpp_gb_per_s:.2f} GB/s)")
    return out


def _times(v):
    return f"{v:.1f}x" if v >= 1 else f"{v:.2g}x"


def render_table(rows, targets):
    """The readable report: every row with its ratio to multiprocessing.Pipe, then the targets."""
    lines = [f"{'transport':22} {'mode':8} {'wait':8} {'size':>6}  {'result':>28}  {'vs Pipe':>8}"]
    for r in rows:
        pipe = _find(rows, "multiprocessing.Pipe", r["mode"], r["wait"], r["size"])
        if pipe is None and r["mode"] == "stream":
            # eshm_batch, and eshm's 64 KiB spin stream: against Pipe's (blocking) stream of that size.
            pipe = _find(rows, "multiprocessing.Pipe", "stream", "blocking", r["size"])
        if r["latency_ns"]:
            result = f"RT p50 {r['latency_ns']['p50'] / 1000:.2f} us p99 {r['latency_ns']['p99'] / 1000:.1f}"
            ratio = pipe and pipe["latency_ns"]["p50"] / r["latency_ns"]["p50"]
        elif r["size"] >= KIB64:
            result = f"{r['gb_per_s']:.3f} GB/s"
            ratio = pipe and r["gb_per_s"] / pipe["gb_per_s"]
        else:
            result = f"{r['msgs_per_s']:,.0f} msg/s"
            ratio = pipe and r["msgs_per_s"] / pipe["msgs_per_s"]
        ratio_text = _times(ratio) if ratio else "-"
        lines.append(f"{r['transport']:22} {r['mode']:8} {r['wait']:8} {r['size']:>6}  {result:>28}  {ratio_text:>8}")
    lines.append("")
    lines.append("Targets:")
    for desc, value, met in targets:
        state = "not measured" if met is None and not desc.startswith("(info)") else (
            "" if met is None else ("met" if met else "NOT met"))
        lines.append(f"  {desc:58} {value:>34}  {state}")
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m eshm.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=64, help="message size in bytes (default 64)")
    ap.add_argument("--duration", type=float, default=0.5, help="seconds measured per repetition (0.5)")
    ap.add_argument("--warmup", type=float, default=0.1, help="seconds of warm-up per repetition (0.1)")
    ap.add_argument("--repetitions", type=int, default=5, help="repetitions per measurement; median kept (5)")
    ap.add_argument("--batch", type=int, default=256, help="messages per write_many() call (256)")
    ap.add_argument("--transports", default=None,
                    help="comma-separated subset of: eshm,eshm_batch,multiprocessing.Pipe,multiprocessing.Queue,"
                         "faster-fifo,pyzmq,iceoryx2 (default: all)")
    ap.add_argument("--no-64k", dest="kib64", action="store_false", help="skip the 64 KiB bandwidth runs")
    ap.add_argument("--cpp-bench", default=os.environ.get("ESHM_BENCH_CPP"),
                    help="the C++ eshm-bench binary for the 64 KiB comparison (default $ESHM_BENCH_CPP)")
    ap.add_argument("--cpus", default=None, help="pin the two processes to these CPUs, e.g. 0,1 (default: unpinned)")
    ap.add_argument("--json", default=None, help="write the results to this file (schema eshm-bench/2)")
    ap.add_argument("--arrays", action="store_true",
                    help="instead of the above: numpy float32 arrays of --array-bytes, one per message: eshm "
                         "write_array() with read_array() (eshm_array) or recv_array() (eshm_array_view), "
                         "against multiprocessing.shared_memory plus a Pipe and pyzmq send(copy=False)")
    ap.add_argument("--array-bytes", type=int, default=1 << 20, help="bytes per array with --arrays (1 MiB)")
    ap.add_argument("--idle", default=None, metavar="N[,N...]",
                    help="instead of the above: the CPU a process spends holding N open, idle channels (masters "
                         "with 4 KiB rings, no peer), and the time to open and to close them, for each N")
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="seconds of CPU measured per N with --idle (5)")
    ap.add_argument("--asyncio", action="store_true",
                    help="instead of the above: round trips from an asyncio client: eshm read_async() against "
                         "asyncio.to_thread(read) and zmq.asyncio over ipc (--size bytes, --repetitions, --duration)")
    ap.add_argument("--idle-peers", action="store_true",
                    help="with --idle: a second process opens the N slaves, and both processes are measured")
    opts = ap.parse_args(argv)
    if opts.cpus:
        cpus = [int(c) for c in opts.cpus.split(",")]
        if len(cpus) != 2:
            ap.error("--cpus takes two CPU numbers: A,B")
        opts.cpus = cpus
    if opts.repetitions < 1 or opts.duration <= 0 or opts.warmup < 0 or opts.batch < 1 or opts.size < 2:
        ap.error("--repetitions and --batch must be >= 1, --duration > 0, --warmup >= 0, --size >= 2")
    if opts.array_bytes < 8 or opts.array_bytes % 4:
        ap.error("--array-bytes must be a multiple of 4, at least 8")
    if opts.idle is not None:
        try:
            opts.idle = [int(n) for n in opts.idle.split(",")]
        except ValueError:
            ap.error("--idle takes channel counts: N[,N...]")
        if not opts.idle or min(opts.idle) < 1 or opts.idle_seconds <= 0:
            ap.error("--idle counts must be >= 1 and --idle-seconds > 0")
    return opts


def main(argv=None):
    # Killed by SIGTERM (timeout, CI): unwind, so every channel is closed and its segment name removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if argv is None:
        argv = sys.argv[1:]
        # The exact command line: the interpreter's own argv where Python keeps it (3.10+); before, sys.argv[0]
        # is this file's path, so the command is rebuilt as `python -m eshm.bench ...`.
        orig = getattr(sys, "orig_argv", None)
        command = shlex.join(orig if orig else [sys.executable, "-m", "eshm.bench", *argv])
    else:
        command = shlex.join([os.path.basename(sys.executable), "-m", "eshm.bench", *argv])
    opts = parse_args(argv)
    if opts.arrays:
        return main_arrays(opts, command)
    if opts.idle is not None:
        return main_idle(opts)
    if opts.asyncio:
        return main_asyncio(opts, command)
    chosen = set(opts.transports.split(",")) if opts.transports else None
    notes = []
    available = []
    for name, ok, note in transports():
        if chosen is not None and name not in chosen:
            continue
        if ok:
            available.append(name)
        else:
            notes.append(f"{name} skipped: {note}")
            print(f"note: {name} skipped: {note}")
    size = opts.size
    print(f"eshm.bench: {size} B messages, {opts.repetitions} repetitions of {opts.duration} s "
          f"(+{opts.warmup} s warm-up), processes {'pinned to ' + str(opts.cpus) if opts.cpus else 'unpinned'}")
    # (transport, mode, wait, size, messages per write_many() or 0, read_into() a reused buffer)
    singles = [t for t in available if t != "eshm_batch"]
    specs = [(t, "stream", "blocking", size, 0, False) for t in singles]
    if "eshm_batch" in available:
        specs.append(("eshm_batch", "stream", "blocking", size, opts.batch, False))
    for wait in ("spin", "blocking"):
        specs += [(t, "pingpong", wait, size, 0, False) for t in singles]
    if opts.kib64:
        if "eshm" in available:
            specs.append(("eshm", "stream", "spin", KIB64, 0, True))
        specs += [(t, "stream", "blocking", KIB64, 0, False) for t in singles if t != "eshm"]
    rows = measure_all(specs, opts)
    cpp = cpp_rt = None
    floors = []
    if opts.cpp_bench:
        # The C++ engine in the same run, by its own tool; each entry goes into `floors` in that tool's shape.
        if opts.kib64:
            stream, what = run_cpp_bench(opts.cpp_bench, "stream", KIB64)
            if stream is None:
                notes.append(f"64 KiB vs C++ not measured: {what}")
            else:
                cpp = stream["gb_per_s"]
                floors.append({"name": "eshm_cpp_stream", "size": KIB64, "latency_ns": None, "gb_per_s": cpp})
                notes.append(f"C++ engine 64 KiB stream: {cpp:.3f} GB/s ({what})")
            print(f"note: {notes[-1]}")
        if "eshm" in available:
            pingpong, what = run_cpp_bench(opts.cpp_bench, "pingpong", size)
            if pingpong is None:
                notes.append(f"C++ spin round trip not measured: {what}")
            else:
                cpp_rt = pingpong["latency_ns"]
                floors.append({"name": "eshm_cpp_pingpong", "size": size, "latency_ns": cpp_rt, "gb_per_s": None})
                notes.append(f"C++ engine {size} B spin round trip p50: {cpp_rt['p50'] / 1000:.2f} us ({what})")
            print(f"note: {notes[-1]}")
    elif opts.kib64:
        notes.append("64 KiB vs C++ not measured: no --cpp-bench (or $ESHM_BENCH_CPP) given")
    targets = evaluate(rows, size, cpp, cpp_rt)
    print()
    print(render_table(rows, targets))
    for n in notes:
        print(f"note: {n}")
    if opts.json:
        _write_json(opts.json, command, opts, floors, rows)
    return 0


def _write_json(path, command, opts, floors, rows):
    doc = {
        "schema": SCHEMA,
        "tool": TOOL,
        "command": command,
        "machine": machine_info(),
        "setup": {"ends": "processes", "pinned": bool(opts.cpus), "cpus": opts.cpus,
                  "warmup_s": float(opts.warmup), "repetitions": opts.repetitions},
        "floors": floors,
        "results": rows,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def main_arrays(opts, command):
    """--arrays: the numpy comparison."""
    chosen = set(opts.transports.split(",")) if opts.transports else None
    available = []
    for name, ok, note in array_transports():
        if chosen is not None and name not in chosen:
            continue
        if ok:
            available.append(name)
        else:
            print(f"note: {name} skipped: {note}")
    print(f"eshm.bench --arrays: {_size_text(opts.array_bytes)} arrays, {opts.repetitions} repetitions of "
          f"{opts.duration} s (+{opts.warmup} s warm-up), processes "
          f"{'pinned to ' + str(opts.cpus) if opts.cpus else 'unpinned'}; every receiver reads its array's first "
          "element")
    rows = measure_arrays(available, opts.array_bytes, opts)
    print()
    print(render_array_table(rows))
    if opts.json:
        _write_json(opts.json, command, opts, [], rows)
    return 0


# Run in a fresh interpreter per count, so each measures a process that holds only its own channels. With
# "peers", it starts a second interpreter that opens the slaves, and both measure the same window.
_IDLE_CHILD = r"""
import json, os, subprocess, sys, time
from eshm import ESHM
n, seconds, role = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
prefix = sys.argv[4] if len(sys.argv) > 4 else f"eshm_bench_idle_{os.getpid()}"
names = [f"{prefix}_{i}" for i in range(n)]
peer = None
start = time.monotonic()
if role == "slave":
    channels = [ESHM(name, role="slave") for name in names]
else:
    channels = [ESHM(name, role="master", m2s_capacity=4096, s2m_capacity=4096) for name in names]
opened = time.monotonic() - start
if role == "master+peers":
    peer = subprocess.Popen([sys.executable, "-c", sys.argv[5], str(n), str(seconds), "slave", prefix],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = peer.stdout.readline()  # the slaves are open
    deadline = time.monotonic() + 60
    while not all(c.is_remote_alive() for c in channels) and time.monotonic() < deadline:
        time.sleep(0.01)
    alive = sum(c.is_remote_alive() for c in channels)
else:
    print("open", flush=True)
    alive = None
try:
    if role == "slave":
        sys.stdin.readline()  # the master says when to measure
    else:
        time.sleep(1.0)  # let the monitor settle
        if peer is not None:
            peer.stdin.write("go\n"); peer.stdin.flush()
    t0, w0 = os.times(), time.monotonic()
    time.sleep(seconds)
    t1, w1 = os.times(), time.monotonic()
    still_alive = None if role == "slave" else sum(c.is_remote_alive() for c in channels)
finally:
    start = time.monotonic()
    for channel in channels:
        channel.close()
    closed = time.monotonic() - start
cpu = (t1.user + t1.system) - (t0.user + t0.system)
result = {"channels": n, "cpu_percent_of_one_core": 100.0 * cpu / (w1 - w0), "open_s": opened, "close_s": closed}
if peer is not None:
    result["peer"] = json.loads(peer.communicate(timeout=120)[0].strip().splitlines()[-1])
    result["alive_before"], result["alive_after"] = alive, still_alive
print(json.dumps(result))
"""


def main_idle(opts):
    """--idle: the cost of open, idle channels (CPU while idle, and the time to open and close them)."""
    if opts.idle_peers:
        print(f"eshm.bench --idle --idle-peers: per count, a fresh process opens N masters (4 KiB rings) and "
              f"another the N slaves; both idle 1 s, then each one's CPU time is measured over the same "
              f"{opts.idle_seconds} s")
        print(f"{'channels':>9} {'masters CPU %':>14} {'slaves CPU %':>13} {'open (s)':>9} {'close (s)':>10} "
              f"{'peers alive':>12}")
    else:
        print(f"eshm.bench --idle: per count, a fresh process opens N masters (4 KiB rings, no peer), idles 1 s, "
              f"then its CPU time is measured over {opts.idle_seconds} s")
        print(f"{'channels':>9} {'CPU (% of one core)':>20} {'open (s)':>9} {'close (s)':>10}")
    for n in opts.idle:
        timeout = 120 + opts.idle_seconds + n * 0.2
        args = [sys.executable, "-c", _IDLE_CHILD, str(n), str(opts.idle_seconds)]
        if opts.idle_peers:
            args += ["master+peers", f"eshm_bench_idle_{os.getpid()}_{n}", _IDLE_CHILD]
        else:
            args += ["master"]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True).stdout
        except subprocess.TimeoutExpired:
            print(f"{n:>9} did not finish within {timeout:.0f} s")
            continue
        except subprocess.CalledProcessError as e:
            print(f"{n:>9} failed: {e.stderr.strip().splitlines()[-1] if e.stderr.strip() else e}")
            continue
        r = json.loads(out.strip().splitlines()[-1])
        if opts.idle_peers:
            p = r["peer"]
            print(f"{n:>9} {r['cpu_percent_of_one_core']:>14.1f} {p['cpu_percent_of_one_core']:>13.1f} "
                  f"{max(r['open_s'], p['open_s']):>9.2f} {max(r['close_s'], p['close_s']):>10.2f} "
                  f"{r['alive_after']:>5}/{n:<6}")
        else:
            print(f"{n:>9} {r['cpu_percent_of_one_core']:>20.1f} {r['open_s']:>9.2f} {r['close_s']:>10.2f}")
    return 0


# ---- --asyncio ----

# (name, transport, how the client waits, the client's wait, the echo's wait). A read_async whose message
# comes within its wait's poll budget takes it on the loop's thread; one whose message comes later (the echo
# sleeps, or the client was opened with wait="sleep") is woken through the loop's helper thread.
_ASYNCIO_VARIANTS = (
    ("eshm read_async", "eshm", "read_async", "adaptive", "adaptive"),
    ("eshm to_thread(read)", "eshm", "to_thread", "adaptive", "adaptive"),
    ("eshm read_async, echo sleeps", "eshm", "read_async", "adaptive", "sleep"),
    ("eshm to_thread(read), echo sleeps", "eshm", "to_thread", "adaptive", "sleep"),
    ("eshm read_async, both sleep", "eshm", "read_async", "sleep", "sleep"),
    ("eshm to_thread(read), both sleep", "eshm", "to_thread", "sleep", "sleep"),
    ("zmq.asyncio ipc", "pyzmq", "zmq.asyncio", None, None),
)


def _asyncio_echo(transport, address, echo_wait, cpu, ready):
    """The child: echoes every message with blocking calls until it gets the end marker."""
    _pin(cpu)
    if transport == "eshm":
        from eshm import ESHM

        ch = ESHM(address, role="slave", wait=echo_wait)
        recv, send = (lambda: ch.read(timeout_ms=-1)), ch.write
    else:
        zmq = _zmq()
        ctx = zmq.Context()
        ch = ctx.socket(zmq.PAIR)
        ch.connect(address)
        recv, send = ch.recv, ch.send
    os.write(ready, b"r")
    while True:
        m = recv()
        if m == _END:
            break
        send(m)
    ch.close()


async def _asyncio_client(transport, how, ch, msg, warmup_s, duration_s):
    import asyncio

    if how == "read_async":
        recv = ch.read_async
    elif how == "to_thread":
        def recv():
            return asyncio.to_thread(ch.read, None, -1)
    else:
        recv = ch.recv
    send = ch.write if transport == "eshm" else ch.send
    clock = time.perf_counter_ns
    samples = []
    for phase_s, keep in ((warmup_s, False), (duration_s, True)):
        stop = clock() + int(phase_s * 1e9)
        while True:
            t0 = clock()
            send(msg)
            await recv()
            t1 = clock()
            if keep:
                samples.append(t1 - t0)
            if t1 >= stop:
                break
    sent = send(_END)
    if transport != "eshm":
        await sent
    return samples


def _asyncio_once(variant, opts):
    import asyncio

    name, transport, how, client_wait, echo_wait = variant
    cpus = opts.cpus or [None, None]
    tag = f"eshm_bench_aio_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if transport == "eshm":
        from eshm import ESHM

        address = tag
        ch = ESHM(address, role="master", wait=client_wait)
    else:
        zmq = _zmq()
        import zmq.asyncio

        address = f"ipc://{tempfile.gettempdir()}/{tag}.ipc"
        ctx = zmq.asyncio.Context()
        ch = ctx.socket(zmq.PAIR)
        ch.bind(address)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _asyncio_echo(transport, address, echo_wait, cpus[1], ready_w)
        except BaseException:
            code = 1
        os._exit(code)
    try:
        os.close(ready_w)
        os.read(ready_r, 1)
        _pin(cpus[0])
        samples = asyncio.run(_asyncio_client(transport, how, ch, b"x" * opts.size, opts.warmup, opts.duration))
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"{name}: the echo process failed (status {status})")
    finally:
        os.close(ready_r)
        _pin_all()
        ch.close()
        if transport != "eshm":
            ctx.term()
            try:
                os.unlink(address[len("ipc://"):])
            except OSError:
                pass
    return samples


def main_asyncio(opts, command):
    """--asyncio: round trips seen by an asyncio client."""
    variants = [v for v in _ASYNCIO_VARIANTS if v[1] != "pyzmq" or _zmq() is not None]
    if len(variants) < len(_ASYNCIO_VARIANTS):
        print("note: zmq.asyncio skipped: pyzmq is not installed")
    print(f"eshm.bench --asyncio: {opts.size} B round trips, {opts.repetitions} interleaved repetitions of "
          f"{opts.duration} s (+{opts.warmup} s warm-up), processes "
          f"{'pinned to ' + str(opts.cpus) if opts.cpus else 'unpinned'}; the asyncio client sends, then awaits "
          "the echo")
    per = {v[0]: [] for v in variants}
    counts = {v[0]: 0 for v in variants}
    for rep in range(opts.repetitions):
        for v in variants:
            samples = _asyncio_once(v, opts)
            counts[v[0]] += len(samples)
            per[v[0]].append(latency_summary(samples))
    rows = []
    print(f"\n{'client':<36} {'p50 (us)':>17} {'p99 (us)':>19}   p50 vs to_thread (same repetition)")
    for v in variants:
        runs = per[v[0]]
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        span50 = f"{min(r['p50'] for r in runs) / 1e3:.1f}-{max(r['p50'] for r in runs) / 1e3:.1f}"
        span99 = f"{min(r['p99'] for r in runs) / 1e3:.1f}-{max(r['p99'] for r in runs) / 1e3:.1f}"
        versus = ""
        base = next((b[0] for b in variants if b[2] == "to_thread" and b[3:] == v[3:]), None)
        if v[2] == "read_async" and base is not None:
            ratios = [b["p50"] / a["p50"] for a, b in zip(runs, per[base])]
            versus = f"{statistics.median(ratios):.1f}x lower ({min(ratios):.1f}-{max(ratios):.1f})"
        print(f"{v[0]:<36} {p50 / 1e3:>7.1f} ({span50:>8}) {p99 / 1e3:>8.1f} ({span99:>9})   {versus}")
        # The shared schema's row (median p50 and p99 over the repetitions), and what this mode adds.
        row = _row(v[0], "asyncio_pingpong", v[3] or "blocking", opts.size, counts[v[0]],
                   opts.duration * len(runs), {"p50": p50, "p99": p99})
        row.update({"echo_wait": v[4] or "blocking", "repetitions": runs})
        rows.append(row)
    if opts.json:
        _write_json(opts.json, command, opts, [], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
