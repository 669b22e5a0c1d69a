# cython: language_level=3
# C++ declarations of the eshm engine (eshm/channel.h) and of the small glue header _eshm_glue.h, for
# _eshm.pyx. Only what the binding uses is declared. Every name is C-prefixed so that it never collides
# with the Python-level names.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libcpp cimport bool as cbool
from libcpp.memory cimport shared_ptr, unique_ptr
from libcpp.string cimport string
from libcpp.vector cimport vector
from posix.types cimport mode_t


cdef extern from "absl/status/status.h" namespace "absl" nogil:
    cdef cppclass CStatus "absl::Status":
        CStatus()
        cbool ok()
        int raw_code()

    cdef cppclass CStatusOr "absl::StatusOr"[T]:
        CStatusOr()
        cbool ok()
        const CStatus& status()
        T& value()


cdef extern from "eshm/wait_strategy.h" namespace "eshm" nogil:
    cdef cppclass CWaitStrategy "eshm::WaitStrategy":
        int64_t spin_ns
        int64_t yield_ns
        cbool allow_sleep


cdef extern from "eshm/channel.h" namespace "eshm" nogil:
    cdef enum class CChannelRole "eshm::ChannelRole":
        kMaster
        kSlave
        kAuto

    cdef cppclass CChannelOptions "eshm::ChannelOptions":
        int stale_threshold_ms
        int heartbeat_interval_ms
        int reconnect_wait_ms
        int reconnect_retry_interval_ms
        int max_reconnect_attempts
        cbool auto_cleanup
        cbool use_threads
        uint64_t m2s_capacity
        uint64_t s2m_capacity
        uint64_t max_message_bytes
        mode_t mode
        cbool allow_other_owner
        CWaitStrategy wait

    cdef cppclass CIoResult "eshm::IoResult":
        pass

    cdef cppclass CChannelStats "eshm::ChannelStats":
        uint32_t master_pid
        uint32_t slave_pid
        cbool master_alive
        cbool slave_alive
        uint64_t master_heartbeat
        uint64_t slave_heartbeat
        uint64_t m2s_write_count
        uint64_t m2s_read_count
        uint64_t s2m_write_count
        uint64_t s2m_read_count
        uint64_t epoch
        uint64_t segment_epoch_ns
        uint64_t reconnect_count
        uint64_t m2s_queued_bytes
        uint64_t m2s_queued_messages
        uint64_t s2m_queued_bytes
        uint64_t s2m_queued_messages
        uint64_t m2s_capacity
        uint64_t s2m_capacity
        uint64_t max_message_bytes
        uint64_t wake_syscalls
        uint64_t wait_syscalls

    cdef cppclass CChannel "eshm::Channel":
        const string& name()
        cbool IsRemoteAlive()
        uint64_t max_message_bytes()
        CChannelStats stats()
        CStatus StatusOf(CIoResult result)
        CIoResult Flush()
        CIoResult Commit(size_t size)
        void Abort()
        shared_ptr[void] PinClaimMemory()
        CIoResult Release()
        void Shutdown()
        void Close()


cdef extern from "eshm/wait_set.h" namespace "eshm" nogil:
    cdef cppclass CWaitReady "eshm::WaitSet::Ready":
        CChannel* channel
        unsigned events

    cdef cppclass CWaitSet "eshm::WaitSet":
        CWaitSet()
        CStatus Add(CChannel* channel, unsigned interest, size_t write_size)
        CStatus Remove(const CChannel* channel)
        void Wake()


# The one mapping from an engine status to an eshm.h result code, shared with the C ABI.
cdef extern from "eshm/internal/result_code.h" namespace "eshm::internal" nogil:
    cdef enum class COperation "eshm::internal::Operation":
        kOpen
        kWrite
        kRead

    int ResultCodeFor(const CStatus& status, COperation op, CChannelRole role)


cdef extern from "_eshm_glue.h" namespace "eshm_py" nogil:
    int64_t NowNs()
    CStatusOr[unique_ptr[CChannel]] Open(const string& name, const CChannelOptions& options)
    void SetEnums(CChannelOptions* options, int role, int disconnect_behavior)
    int RoleOf(const CChannel& channel)
    int PeerStateOf(const CChannel& channel)
    int IoResultCode(CIoResult result)
    string MessageOf(const CStatus& status)
    CStatus StatusOfResult(const CChannel& channel, int result)
    CIoResult TryWrite(CChannel* channel, const char* data, size_t size)
    CStatus Write(CChannel* channel, const char* data, size_t size, int64_t deadline_ns)
    CIoResult TryRead(CChannel* channel, char* buffer, size_t capacity, size_t* size)
    CIoResult SpinTryRead(CChannel* channel, char* buffer, size_t capacity, size_t* size, int64_t budget_ns)
    CStatusOr[size_t] Read(CChannel* channel, char* buffer, size_t capacity, int64_t deadline_ns)
    int64_t NextMessageSize(CChannel* channel)
    CStatusOr[size_t] WriteBatch(CChannel* channel, const char* const* data, const size_t* sizes, size_t count,
                                 int64_t deadline_ns)
    size_t TryWriteBatch(CChannel* channel, const char* const* data, const size_t* sizes, size_t count)
    CIoResult TryPeek(CChannel* channel, const char** data, size_t* size)
    CIoResult SpinTryPeek(CChannel* channel, const char** data, size_t* size, int64_t budget_ns)
    CStatus Peek(CChannel* channel, int64_t deadline_ns, const char** data, size_t* size)
    char* TryClaim(CChannel* channel, size_t size)
    CStatus ClaimWait(CChannel* channel, size_t size, int64_t deadline_ns, char** data)
    void SetMainThreadIdent(unsigned long ident)
    CStatus WaitOnSet(CWaitSet* wait_set, int64_t deadline_ns, vector[CWaitReady]* ready)
