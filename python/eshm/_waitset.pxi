# Part of _eshm.pyx (included there): WaitSet, waiting on many channels at once (eshm/wait_set.h).

READABLE = 1       # a message is queued
WRITABLE = 2       # a message of the member's write_size fits
PEER_CHANGED = 4   # the peer's state changed since the last report (see peer_state())
CLOSED = 8         # the channel was closed: remove it


cdef class WaitSet:
    """Waits until any of many channels is readable (or writable, or its peer changed state).

    While messages flow it polls and makes no system call; when every member is idle it sleeps once, on all
    of them (see eshm/wait_set.h). A wait holds the read side of the members it waits to read from (and the
    write side of those it waits to write to), as a read would: other threads' reads of them wait meanwhile,
    and reading them from the waiting thread after it returns is the intended use. Members are added and
    removed between waits; a wait runs on one thread at a time. Ctrl-C ends a wait with KeyboardInterrupt,
    and a member closed by another thread during a wait ends it (reported CLOSED).
    """

    cdef unique_ptr[CWaitSet] _set
    cdef list _members      # [channel, interest, key]; key: the engine channel's address, kept after close
    cdef bint _waiting
    cdef bint _woken        # wake() was called: the wait in progress, or the next, returns
    cdef vector[CWaitReady] _ready

    def __cinit__(self):
        self._set.reset(new CWaitSet())
        self._members = []

    def __len__(self):
        return len(self._members)

    cdef list _find(self, Channel channel):
        for member in self._members:
            if member[0] is channel:
                return member
        return None

    cdef int _not_waiting(self, str what) except -1:
        if self._waiting:
            raise RuntimeError(f"WaitSet.{what}: a wait is in progress on another thread; call wake() and let it "
                               "return first")
        return 0

    def add(self, Channel channel not None, *, bint readable=True, bint writable=False, write_size=1):
        """Adds `channel`, waiting until it is readable and/or writable (a message of write_size bytes fits).
        Peer changes and closing are always reported."""
        self._not_waiting("add")
        cdef CChannel* ch = channel._open_channel()
        if self._find(channel) is not None:
            raise ValueError(f"WaitSet.add: channel '{channel.name}' is already in this set; remove it first to "
                             "change what it waits for")
        cdef unsigned interest = (READABLE if readable else 0) | (WRITABLE if writable else 0)
        if interest == 0:
            raise ValueError("WaitSet.add: wait for readable, writable or both")
        cdef size_t size = _int_arg(write_size, "write_size")
        check_status(self._set.get().Add(ch, interest, size), OP_READ, ROLE_AUTO)
        self._members.append([channel, interest, <size_t>ch, size])
        channel._sets.append(self)

    def remove(self, Channel channel not None):
        """Removes `channel` (also once it is closed). KeyError if it is not a member."""
        self._not_waiting("remove")
        member = self._find(channel)
        if member is None:
            raise KeyError(f"WaitSet.remove: channel '{channel.name}' is not in this set")
        # NotFound only for a member _wait_available left out and could not put back (it was closed).
        self._set.get().Remove(<CChannel*><size_t>member[2])
        self._members.remove(member)
        try:
            channel._sets.remove(self)
        except ValueError:
            pass

    def wake(self):
        """Ends the wait in progress on another thread (or the next wait) early, with no channel ready."""
        self._woken = True
        self._set.get().Wake()

    def wait(self, timeout_ms=None):
        """The members that are ready, waiting until one is or timeout_ms passes (None: no limit); an empty
        list on timeout or wake()."""
        return [channel for channel, _ in self.wait_events(timeout_ms)]

    def wait_events(self, timeout_ms=None):
        """As wait(), with what each member is ready for: a list of (channel, events), events a combination
        of READABLE, WRITABLE, PEER_CHANGED and CLOSED."""
        self._not_waiting("wait")
        cdef int64_t deadline = INT64_MAX if timeout_ms is None else _deadline_ns(timeout_ms)
        cdef CStatus status
        cdef Channel ch
        cdef list taken = []
        cdef bint closing = False
        self._waiting = True
        try:
            for member in self._members:
                ch = member[0]
                if ch.closed:
                    continue
                if member[1] & READABLE:
                    ch._take_reader(deadline)
                    taken.append((ch, True))
                if member[1] & WRITABLE:
                    ch._take_writer(deadline)
                    taken.append((ch, False))
            with nogil:
                status = WaitOnSet(self._set.get(), deadline, &self._ready)
            if not status.ok() and PyErr_Occurred() != NULL:
                _raise_pending()  # a signal handler raised while it waited (Ctrl-C: KeyboardInterrupt)
            check_status(status, OP_READ, ROLE_AUTO)
            # A close() on another thread (which ends the wait: its channel reports closed) waits for the sides
            # this wait holds: let go, and report it.
            closing = any((<Channel>m[0])._closing for m in self._members)
        finally:
            for ch, reader in taken:
                if reader:
                    ch._drop_reader()
                else:
                    ch._drop_writer()
            self._waiting = False
            self._woken = False
            for ch, _ in taken:
                ch._after_call()
        by_key = {m[2]: m for m in self._members}
        result = []
        reported = set()
        for r in self._ready:
            member = by_key.get(<size_t>r.channel)
            if member is not None:
                result.append((member[0], r.events))
                reported.add(id(member[0]))
        if closing:
            for member in self._members:
                if (<Channel>member[0])._closing and id(member[0]) not in reported:
                    result.append((member[0], CLOSED))
        return result

    def _wait_available(self, timeout_ms):
        """For eshm._aio's helper thread: as wait_events(), but never waits for a member's side. A member whose
        side another thread holds or waits for (a read or write in progress) sits this wait out, and the wait
        then lasts at most 5 ms so that it is looked at again soon; a member being closed is reported CLOSED at
        once. Such a read or write also ends the wait at once (Channel._acquire wakes it)."""
        self._not_waiting("wait")
        cdef int64_t deadline = INT64_MAX if timeout_ms is None else _deadline_ns(timeout_ms)
        cdef CStatus status
        cdef Channel ch
        cdef list taken = []
        cdef list sat_out = []
        cdef list result = []
        cdef bint reader_taken
        self._waiting = True
        try:
            for member in self._members:
                ch = member[0]
                if ch._closing or ch._ch.get() == NULL:
                    result.append((ch, CLOSED))
                    continue
                reader_taken = False
                if ch._lock_waiters:  # a read or write on another thread waits for a side: its turn first
                    sat_out.append(member)
                    continue
                if member[1] & READABLE:
                    if not PyThread_acquire_lock(ch._rlock, NOWAIT_LOCK):
                        sat_out.append(member)
                        continue
                    ch._rowner = PyThread_get_thread_ident()
                    taken.append((ch, True))
                    reader_taken = True
                if member[1] & WRITABLE:
                    if not PyThread_acquire_lock(ch._wlock, NOWAIT_LOCK):
                        if reader_taken:
                            taken.pop()
                            ch._drop_reader()
                        sat_out.append(member)
                        continue
                    ch._wowner = PyThread_get_thread_ident()
                    taken.append((ch, False))
            for member in sat_out:
                check_status(self._set.get().Remove(<CChannel*><size_t>member[2]), OP_READ, ROLE_AUTO)
            if sat_out:
                deadline = min(deadline, NowNs() + 5000000)
            if not result:
                with nogil:
                    status = WaitOnSet(self._set.get(), deadline, &self._ready)
                check_status(status, OP_READ, ROLE_AUTO)
        finally:
            for ch, reader in taken:
                if reader:
                    ch._drop_reader()
                else:
                    ch._drop_writer()
            for member in sat_out:
                ch = member[0]
                if not ch.closed:
                    check_status(self._set.get().Add(ch._ch.get(), member[1], member[3]), OP_READ, ROLE_AUTO)
            self._waiting = False
            self._woken = False
            for ch, _ in taken:
                ch._after_call()
        if result:
            return result
        by_key = {m[2]: m for m in self._members}
        for r in self._ready:
            member = by_key.get(<size_t>r.channel)
            if member is not None:
                result.append((member[0], r.events))
        for member in self._members:
            ch = member[0]
            if ch._closing and not any(c is ch for c, _ in result):
                result.append((ch, CLOSED))
        return result

    def __repr__(self):
        return f"<eshm.WaitSet of {len(self._members)} channel(s)>"
