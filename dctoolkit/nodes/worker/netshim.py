"""Starts bubblewrap with a user-mode network helper attached to the sandbox's own network namespace.

It is never imported by the node: `usernet.py` passes this file's text to
`python -I -S -c` on the host, followed by the helper's command as JSON (with
`{netns}` and `{userns}` where the paths of the sandbox's network and user
namespaces go) and bubblewrap's command.  Only the standard library is at hand.

This process becomes bubblewrap (exec), so the node's process is bubblewrap
itself, as without a private network: its pid, exit status and
`--die-with-parent` are unchanged.  Before that it forks a manager which reads
the sandbox's pid from bubblewrap's `--info-fd`, waits until bubblewrap has
set up the sandbox's loopback, forks a releaser that waits until the
namespace has a default route and then unblocks bubblewrap's `--block-fd`,
and itself becomes the helper.  The helper dies with bubblewrap (a
parent-death signal set before its exec; bubblewrap's outer process is its
parent), so it never outlives the sandbox, however the sandbox ends, even
when the node is killed.  When the network does not come up within
READY_SECONDS, the sandbox and bubblewrap are killed: a job never runs
without the network it asked for, nor with another one.
"""

import ctypes
import json
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
READY_SECONDS = 10.0
NETNS_FD, USERNS_FD = 3, 4
HELPER_ENV = {"PATH": "/usr/bin:/bin"}  # nothing of the job's or the node's environment reaches the helper


def main() -> None:
    helper, bwrap = json.loads(sys.argv[1]), sys.argv[2:]
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    me = os.getpid()
    if os.fork() == 0:
        os.close(info_w)
        os.close(block_r)
        try:
            manage(me, helper, info_r, block_w)
        finally:
            os._exit(1)
    os.close(info_r)
    os.close(block_w)
    os.set_inheritable(info_w, True)
    os.set_inheritable(block_r, True)
    os.execv(bwrap[0], [bwrap[0], "--info-fd", str(info_w), "--block-fd", str(block_r), *bwrap[1:]])  # noqa: S606


def manage(bwrap: int, helper: list, info_r: int, block_w: int) -> None:
    """In the forked child: become the helper for the sandbox bubblewrap makes."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != bwrap:
        return  # bubblewrap is already gone
    pid = sandbox_pid(info_r)
    if pid is None:
        return  # bubblewrap ended first
    # By pidfd where the kernel has them (5.3+): the releaser outlives this
    # process, and must never signal another process that got a pid reused.
    sandbox = [watch(pid), watch(bwrap)]
    if not wait_for(lambda: loopback_up(pid)):
        kill_sandbox(sandbox)
        return
    releaser = os.fork()
    if releaser == 0:
        # Twice forked, so that no zombie is left under the helper.
        if os.fork() == 0:
            close_all_but({block_w, *(w for w in sandbox if isinstance(w, Pidfd))})  # the zygote's socket...
            release_when_ready(sandbox, pid, block_w)
        os._exit(0)
    os.waitpid(releaser, 0)
    os.close(block_w)
    # The namespaces are opened here, with every capability: the helper, which
    # keeps only a few, may be refused them while bubblewrap sets the sandbox up.
    # It gets them as descriptors 3 and 4 (/proc/self/fd/3 and 4 in its command).
    for fd, kind in ((NETNS_FD, "net"), (USERNS_FD, "user")):
        os.dup2(os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY), fd, inheritable=True)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # not the job's stdout and stderr files
    os.closerange(USERNS_FD + 1, 1 << 16)  # none of the node's descriptors either (the zygote's socket)
    # Python ignores these; pasta (2023-03) refuses to start when SIGPIPE is already ignored.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    argv = [a.replace("{netns}", f"/proc/self/fd/{NETNS_FD}").replace("{userns}", f"/proc/self/fd/{USERNS_FD}")
            for a in helper]  # fmt: skip
    if os.geteuid() == 0 and not private_mounts():
        return  # the sandbox is not released: it ends, and its job fails with the network's reason
    os.execve(argv[0], argv, HELPER_ENV)  # noqa: S606 (our own argv, no shell)


def private_mounts() -> bool:
    """Give this process (the helper to be, as root) a mount namespace of its own, nothing shared with the host.

    slirp4netns's --enable-sandbox unmounts what it does not need; as root, in the
    host's mount namespace with /run/netns shared (as iproute2 makes it), those
    unmounts reached the host: every named network namespace no process held was
    destroyed, and with it its links (seen: a test host's veth gone).  In a
    namespace of its own with private propagation they stay its own.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    return libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0


def sandbox_pid(info_r: int) -> int | None:
    """The sandbox's pid, from bubblewrap's `--info-fd` JSON (None when bubblewrap ended first)."""
    data = b""
    while True:
        chunk = os.read(info_r, 4096)
        if not chunk:
            return None
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue
        except (KeyError, TypeError):
            return None


def wait_for(ready, seconds: float = READY_SECONDS) -> bool:
    """Poll `ready()` until it is true (True) or `seconds` have passed (False)."""
    deadline = time.monotonic() + seconds
    delay = 0.0005
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.005)
    return True


def loopback_up(pid: int) -> bool:
    """True once bubblewrap has set up the sandbox's loopback (its last step before the block).

    The helper must not configure the namespace meanwhile: their netlink
    requests meet, and bubblewrap fails ("loopback: Failed RTM_NEWADDR").
    The kernel lists 127.0.0.1 as a local address only once lo is up.
    """
    try:
        with open(f"/proc/{pid}/net/fib_trie") as f:
            return "127.0.0.1" in f.read()
    except OSError:
        return False


def release_when_ready(sandbox: list, pid: int, block_w: int) -> None:
    """Unblock bubblewrap once the sandbox's namespace has a default route; kill it if none comes."""
    if wait_for(lambda: has_default_route(pid) or ended(sandbox[0])):
        if not ended(sandbox[0]):
            os.write(block_w, b"1")
        os._exit(0)
    kill_sandbox(sandbox)
    os._exit(1)


class Pidfd(int):
    """A process's pidfd (an int, the descriptor), where a plain int is its pid."""


def watch(pid: int) -> int:
    """A Pidfd for `pid`, or `pid` itself on a kernel without pidfds."""
    try:
        return Pidfd(os.pidfd_open(pid))
    except (AttributeError, OSError):
        return pid


def ended(process: int) -> bool:
    if isinstance(process, Pidfd):
        poller = select.poll()
        poller.register(process, select.POLLIN)
        return bool(poller.poll(0))
    try:
        os.kill(process, 0)
        return False
    except OSError:
        return True


def kill_sandbox(sandbox: list) -> None:
    """The network did not come up: the sandbox must not run without it."""
    # The sandbox first: once its block's last writer is gone, bubblewrap would go on.
    for process in sandbox:
        try:
            if isinstance(process, Pidfd):
                signal.pidfd_send_signal(process, signal.SIGKILL)
            else:
                os.kill(process, signal.SIGKILL)
        except OSError:
            pass


def close_all_but(keep: set) -> None:
    """Close every descriptor from 3 up but those in `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def has_default_route(pid: int) -> bool:
    """True when the network namespace of `pid` has an IPv4 default route (the helper configured it)."""
    try:
        with open(f"/proc/{pid}/net/route") as f:
            return any(line.split()[1:2] == ["00000000"] for line in f.readlines()[1:])
    except OSError:
        return False
