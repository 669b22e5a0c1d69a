"""A channel shared between two users from Python, as the README's "Sharing between users" tells it: both users in
one group, the creator running with that group as its effective group and mode=0o660, the other user opening
with allow_other_owner=True. Each side is a forked process that switched to its own uid; needs root.

Children report through their exit code and stderr; they never return into pytest.
"""

import os
import sys
import time
import traceback
import uuid

import pytest

from eshm import ESHM, ChannelPermissionError, InvalidParameterError

CREATOR_UID = 4211
PARTNER_UID = 4212
OUTSIDER_UID = 4213
SHARED_GID = 4252

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run processes as two other users")


@pytest.fixture
def name():
    n = f"pyshare_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield n
    try:
        os.unlink(f"/dev/shm/eshm_{n}")
    except FileNotFoundError:
        pass


def become(uid, gid, groups):
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def fork_as(uid, gid, groups, body):
    """Runs body() in a child that became uid/gid/groups; returns its pid. Exit code 0 if body returned."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            become(uid, gid, groups)
            body()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait_ok(pid, what, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            assert os.waitstatus_to_exitcode(status) == 0, f"{what} failed (see its traceback above)"
            return
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"{what} did not finish within {timeout_s} s")
        time.sleep(0.01)


@needs_root
def test_the_recipe_shares_a_channel_between_two_users(name):
    ready_r, ready_w = os.pipe()

    def creator():
        os.close(ready_r)
        with ESHM(name, role="master", mode=0o660) as ch:
            os.write(ready_w, b"1")
            ch.write(b"hello from the creator", timeout_ms=10_000)
            assert ch.read(timeout_ms=10_000) == b"the partner got: hello from the creator"

    def partner():
        with ESHM(name, role="slave", allow_other_owner=True, max_reconnect_attempts=500,
                  reconnect_retry_interval_ms=10) as ch:
            got = ch.read(timeout_ms=10_000)
            ch.write(b"the partner got: " + got, timeout_ms=10_000)

    creator_pid = fork_as(CREATOR_UID, SHARED_GID, [SHARED_GID], creator)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1", "the creator did not open its channel"
    os.close(ready_r)
    st = os.stat(f"/dev/shm/eshm_{name}")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (CREATOR_UID, SHARED_GID, 0o660)
    partner_pid = fork_as(PARTNER_UID, PARTNER_UID, [PARTNER_UID, SHARED_GID], partner)
    wait_ok(partner_pid, "the partner")
    wait_ok(creator_pid, "the creator")


@needs_root
@pytest.mark.parametrize(
    "who, allow, wanted",
    [
        # A partner that forgot allow_other_owner: the file's owner, mode and the option to set.
        ("partner", False, ["belongs to another user", f"uid {CREATOR_UID}", "mode 0660", "allow_other_owner"]),
        # A user outside the group: what the file allows, who this process is, and the recipe.
        ("outsider", True, ["cannot be opened for reading and writing", f"uid {OUTSIDER_UID}", f"gid {SHARED_GID}",
                            "mode 0660", "one group"]),
    ],
)
def test_a_missing_step_raises_permission_error_naming_owner_mode_and_fix(name, who, allow, wanted):
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()

    def creator():
        os.close(ready_r)
        os.close(release_w)
        with ESHM(name, role="master", mode=0o660):
            os.write(ready_w, b"1")
            os.read(release_r, 1)  # until the parent closes its end

    def opener():
        for role in ("slave", "auto", "master"):
            with pytest.raises(ChannelPermissionError) as raised:
                ESHM(name, role=role, allow_other_owner=allow, max_reconnect_attempts=1)
            assert isinstance(raised.value, PermissionError)
            for w in wanted:
                assert w in str(raised.value), (w, str(raised.value))

    creator_pid = fork_as(CREATOR_UID, SHARED_GID, [SHARED_GID], creator)
    os.close(ready_w)
    os.close(release_r)
    try:
        assert os.read(ready_r, 1) == b"1", "the creator did not open its channel"
        before = os.stat(f"/dev/shm/eshm_{name}")
        uid = PARTNER_UID if who == "partner" else OUTSIDER_UID
        groups = [uid, SHARED_GID] if who == "partner" else [uid]
        wait_ok(fork_as(uid, uid, groups, opener), f"the {who}")
        after = os.stat(f"/dev/shm/eshm_{name}")
        assert (after.st_ino, after.st_uid, after.st_mode) == (before.st_ino, before.st_uid, before.st_mode)
    finally:
        os.close(release_w)
        os.close(ready_r)
    wait_ok(creator_pid, "the creator")


def test_mode_is_checked_and_applied_exactly(name):
    with pytest.raises(InvalidParameterError, match="0o600"):
        ESHM(name, role="master", mode=0o4660)
    with pytest.raises(InvalidParameterError, match="0o600"):
        ESHM(name, role="master", mode=0o440)
    with pytest.raises(TypeError, match="mode"):
        ESHM(name, role="master", mode="0660")
    old = os.umask(0o077)  # the umask does not narrow the mode asked for
    try:
        with ESHM(name, role="master", mode=0o660):
            assert os.stat(f"/dev/shm/eshm_{name}").st_mode & 0o7777 == 0o660
    finally:
        os.umask(old)
