"""The small program that lives inside a warm sandbox and starts one job after another there.

It runs only as `python -I -S -c` inside bubblewrap: `warm.py` passes this
file's text, with the number of a socket to the node as its one argument.
Only the standard library is at hand there.  (The node imports it only for
the message format, encode_request and MAX_REQUEST_BYTES, shared by both ends.)

Its first statement makes it undumpable (PR_SET_DUMPABLE 0): the jobs it
starts run as the same user, with no capability either, and could otherwise
write into its memory through /proc/PID/mem and answer the node in its name.
(A program's dumpable flag is set again by execve, so its jobs are not
affected; the system-call filter bubblewrap installed refuses them ptrace.)

Per job, the node sends one message (`encode_request`: a JSON head `{"cwd",
"argc"}`, with "cpus" where the job is pinned to cores (the job's process sets its
affinity between fork and exec), then the job's argv and NAME=value environment, each after a NUL
byte, never escaped, so that its size is that of the job's own text) of at
most MAX_REQUEST_BYTES, and the job's stdout and stderr as file descriptors
(the files lie in shared storage, which the sandbox never sees), then,
where the node limits jobs through cgroups, the `cgroup.procs` file of each
of the job's cgroups, open for writing: the job's process enters them between
fork and exec, so it runs nothing of its own outside them, while the zygote
and init stay out.  The zygote
answers `{"started": pid}` (the pid inside the sandbox), then, once the job has ended, `{"status", "utime",
"stime", "gone"}`: the wait status and CPU time of the job and every process
it waited for, and whether every other process in the sandbox was killed and
is gone; then `{"clean"}`: whether the sandbox was put back as it was found,
those processes gone and /tmp (but the job's folder) and /dev/shm emptied
(emptied after the end is told, while the node collects and records the job;
the node reads "clean" before the sandbox serves another job or makes a stub).
The node does not take "clean" on trust: it also counts the processes left.
A message it cannot read ends the zygote, and so the sandbox.

Where the node limits jobs through cgroups, the next job's process is made
ahead, because entering a cgroup may wait for an RCU grace period (see
cgroups.py): between jobs the node sends `{"prepare": true}` (with "cpus", the
last job's cores, where it was pinned) and the `cgroup.procs` files of a
spare cgroup; the zygote forks a *stub* (nothing of the last job is left by
then), which enters those cgroups, pins itself to those cores (most often the
next job's too: a process moved to another core as the job starts waits for
that core), closes every descriptor but its socket to the zygote, and waits; the zygote answers
`{"stub": pid}` (or `{"stub": null, "error"}`).  A job's message whose head
says `"stub": true` (its cgroup being the one the stub is in, whose files
come with it as usual) goes to the stub with its stdout, stderr and stdin:
the stub starts a session, pins itself, takes them as 0-2, changes folder
and execs, as subprocess would have; a failure comes back on its socket
before the exec closes it.  Without a live stub, or without the flag, the
job starts as before (a stub the node did not ask to use is killed first).
"""

# The very first statement, before any import: PR_SET_DUMPABLE is 4.  (Not when warm.py imports this file
# for encode_request: only the zygote itself runs as __main__.)
if __name__ == "__main__" and __import__("ctypes").CDLL(None).prctl(4, 0, 0, 0, 0) != 0:
    raise SystemExit("zygote: could not make itself undumpable (prctl PR_SET_DUMPABLE); starting no job")

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

# One job's message: room for the most a job may pass (jobenv.MAX_ENV_AND_ARGS_BYTES, 64 KiB) and as
# much again for what the node adds (its paths, the allowlisted variables); well inside a Unix socket's
# default send buffer (net.core.wmem_default, 208 KiB), which warm.py asks to double besides.
MAX_REQUEST_BYTES = 128 * 1024
MAX_FDS = 9  # stdout, stderr, stdin and the job's cgroup.procs files (one per cgroup v1 hierarchy)
EMPTIED = ("/tmp", "/dev/shm")
PREPARE = b'{"prepare": true}'
ENTERED = b"\0"  # a stub's word that it is in its cgroups
# The stub waiting for a job (pid -> None): reaped as soon as it dies (the node removing its
# cgroup kills it), for a dead process left unreaped would hold its cgroup, which could not be removed.
WAITING: dict = {}


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    mounts = mount_points()
    signal.signal(signal.SIGCHLD, reap_stubs)
    stub = None
    while True:
        try:
            data, fds, flags, _addr = socket.recv_fds(sock, MAX_REQUEST_BYTES + 1, MAX_FDS)
        except OSError:
            return
        if not data:
            return  # the node closed its end: the sandbox is being retired
        if len(data) > MAX_REQUEST_BYTES or flags & socket.MSG_TRUNC:
            return  # the node never sends such a message: end, and the node retires the sandbox
        ahead = decode_prepare(data)
        if ahead is not None:
            drop_stub(stub)
            made = fork_stub(fds, sock, ahead)
            stub = made if isinstance(made, tuple) else None
            sock.send(json.dumps({"stub": made[0]} if stub else {"stub": None, "error": made}).encode())
            continue
        try:
            request = decode_request(data)
        except (ValueError, KeyError, TypeError):
            return
        if request.get("stub") is not True:
            drop_stub(stub)
            stub = None
        status, utime, stime = run_one(request, fds, sock, data, stub)
        stub = None
        gone = end_every_other_process()  # before the job's end is told: the node collects its outputs then
        reply = {"status": status, "utime": utime, "stime": stime, "gone": gone, "me": os.getpid()}
        sock.send(json.dumps(reply).encode())
        clean = gone  # /tmp and /dev/shm are emptied while the node collects and records the job
        for folder in EMPTIED:
            clean = empty(folder, keep={request["cwd"], *mounts}) and clean
        sock.send(json.dumps({"clean": clean}).encode())


def encode_request(argv: list, env: dict, cwd: str, stdin: bool = False, cpus: tuple = (), stub: bool = False) -> bytes:
    """One job's message to the zygote (see the module docstring); no NUL may be in argv or env.

    `stdin`: a third descriptor, after stdout and stderr, is the job's standard input.
    `cpus`: the cores the job is pinned to (its cpu_indices; empty: not pinned).
    `stub`: its cgroup is the one the zygote's stub is in: the stub becomes the job."""
    fields = {"cwd": cwd, "argc": len(argv), **({"stdin": True} if stdin else {}), **({"stub": True} if stub else {})}
    head = json.dumps({**fields, **({"cpus": list(cpus)} if cpus else {})}).encode()
    items = [*argv, *(f"{name}={value}" for name, value in env.items())]
    return head + b"".join(b"\0" + item.encode() for item in items)


def encode_prepare(cpus: tuple = ()) -> bytes:
    """The node's request for a stub (see the module docstring); `cpus`: the cores it pins itself to ahead
    (the last job's: the next one is most often given the same, and then nothing moves as it starts)."""
    return PREPARE if not cpus else json.dumps({"prepare": True, "cpus": list(cpus)}).encode()


def decode_prepare(data: bytes) -> list | None:
    """The cores of `encode_prepare`'s message ([]: none), or None where `data` is not one."""
    if not data.startswith(PREPARE[:-1]):
        return None
    try:
        cpus = json.loads(data).get("cpus", [])
    except (ValueError, AttributeError):
        return None
    return cores(cpus)


def cores(value: object) -> list | None:
    """`value` where it is a list of core numbers (ints >= 0, no bools), else None."""
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value):
        return None
    return value


def decode_request(data: bytes) -> dict:
    """`encode_request`'s message back: {"cwd", "argv", "env"}, argv and env as bytes; ValueError if malformed."""
    head, *items = data.split(b"\0")
    request = json.loads(head)
    argc = request["argc"]
    if not isinstance(argc, int) or not 1 <= argc <= len(items) or not isinstance(request["cwd"], str):
        raise ValueError("malformed request head")
    cpus = cores(request.get("cpus", []))
    if cpus is None:
        raise ValueError("malformed request head: cpus")
    request["cpus"] = cpus
    request["argv"] = items[:argc]
    request["env"] = dict(item.split(b"=", 1) for item in items[argc:])
    return request


def mount_points() -> set:
    """Where something is mounted inside the sandbox (the job's folder, a Python under /tmp, ...)."""
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4].replace("\\040", " ") for line in f}


def run_one(request: dict, fds: list, sock: socket.socket, data: bytes = b"", stub: tuple | None = None) -> tuple:
    """Start the job (in `stub`, where given and alive), tell the node its pid, and wait for it:
    (wait status, user and system CPU seconds)."""
    out, err, *cgroups = fds
    stdin = cgroups.pop(0) if request.get("stdin") is True and cgroups else None
    if stub is not None:
        started = start_in_stub(stub, data, [out, err, *([] if stdin is None else [stdin])])
        if started is not None:
            for fd in fds:
                os.close(fd)
            if started:
                program = os.fsdecode(request["argv"][0])
                sock.send(json.dumps({"error": f"could not start {program}: {started}"}).encode())
                os.waitpid(stub[0], 0)
                return None, 0.0, 0.0
            return wait_for(stub[0], sock)
    try:
        proc = subprocess.Popen(
            request["argv"],
            cwd=request["cwd"],
            env=request["env"],
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=out,
            stderr=err,
            start_new_session=True,
            close_fds=True,  # the cgroup.procs files too: the job cannot move the zygote in
            preexec_fn=(lambda: enter(cgroups, tuple(request["cpus"]))) if cgroups or request["cpus"] else None,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        if isinstance(exc, subprocess.SubprocessError):  # raised in enter(), between fork and exec
            why = "it could not be pinned to its cores or enter its cgroup"
        program = os.fsdecode(request["argv"][0])
        sock.send(json.dumps({"error": f"could not start {program}: {why}"}).encode())
        return None, 0.0, 0.0
    finally:
        for fd in fds:
            os.close(fd)
    proc.returncode = 0  # reaped by wait_for; Popen must not wait again
    return wait_for(proc.pid, sock)


def wait_for(pid: int, sock: socket.socket) -> tuple:
    """Tell the node the job's pid and wait for it: (wait status, user and system CPU seconds)."""
    sock.send(json.dumps({"started": pid}).encode())
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime, usage.ru_stime


def fork_stub(cgroups: list, sock: socket.socket, cpus: tuple | list = ()) -> tuple | str:
    """A child that enters the cgroups (cgroup.procs descriptors, closed here), pins itself to `cpus` ahead
    (where given), and waits for a job: (its pid, the zygote's socket to it), or why it could not."""
    if not cgroups:
        return "no cgroup"
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_REQUEST_BYTES * 2)
    try:
        pid = os.fork()
    except OSError as exc:
        pid, why = -1, exc.strerror or "fork failed"
    if pid == 0:
        try:  # never back into the zygote's loop, whatever happens
            ours.close()
            sock.close()
            serve_as_stub(theirs, cgroups, cpus)
        finally:
            os._exit(127)
    theirs.close()
    for fd in cgroups:
        os.close(fd)
    if pid < 0:
        ours.close()
        return why
    WAITING[pid] = None
    try:
        said = ours.recv(4096)  # ENTERED once it is in them, else why not
    except OSError as exc:
        said = os.fsencode(exc.strerror or "")
    if said != ENTERED:
        drop_stub((pid, ours))
        return os.fsdecode(said) or "it ended"
    return pid, ours


def reap_stubs(*_signal) -> None:
    """SIGCHLD: reap a waiting stub that died (never the job: a stub given one leaves WAITING first)."""
    for pid in list(WAITING):
        try:
            done = os.waitpid(pid, os.WNOHANG)[0]
        except ChildProcessError:
            done = pid
        if done:
            WAITING.pop(pid, None)


def serve_as_stub(sock: socket.socket, cgroups: list, cpus: tuple | list = ()) -> None:
    """The stub: into the job's cgroups, on `cpus` ahead (a guess: the job's own are set again as it
    starts), then wait for the job's message and become it (never returns on success; returns after
    saying on `sock` why not)."""
    try:
        enter(cgroups)
    except OSError as exc:
        sock.send(f"it could not enter its cgroup: {exc.strerror}".encode())
        return
    every = os.sched_getaffinity(0)  # an unpinned job gets these back
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
    except OSError:
        every = set()  # not pinned ahead: nothing to undo
    os.closerange(3, sock.fileno())  # the zygote's socket to the node and the cgroup files among them
    os.closerange(sock.fileno() + 1, 1 << 20)
    sock.send(ENTERED)
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST_BYTES + 1, 3)
    if not data:
        return
    # Whatever stops it before the exec is said on `sock`: the zygote reads the socket closing with
    # nothing said (close-on-exec) as "exec'd", so a stub that ended silently would pass its own exit
    # status (127, os._exit in fork_stub) off as the job's.
    step = "its request was malformed"
    try:
        request = decode_request(data)
        out, err, *rest = fds
        step = "it could not be pinned to its cores or enter its cgroup"
        os.setsid()
        if request["cpus"] or (cpus and every):  # the same cores as ahead: the kernel moves nothing
            os.sched_setaffinity(0, request["cpus"] or every)
        step = ""
        stdin = rest[0] if rest else os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(request["cwd"])
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # what Python ignores; subprocess restores them too
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, sock.fileno())
        os.closerange(sock.fileno() + 1, 1 << 20)
        os.execvpe(request["argv"][0], request["argv"], request["env"])  # noqa: S606 (what Popen would exec)
    except OSError as exc:
        sock.send((step or exc.strerror or str(exc)).encode())
    except Exception as exc:  # a malformed request, a bad argv: said, never silent
        sock.send((step or str(exc) or type(exc).__name__).encode())


def start_in_stub(stub: tuple, data: bytes, fds: list) -> str | None:
    """Hand the job's message to the stub: "" once it exec'd, why not where it could not, None where the
    stub is gone (the job then starts as without one)."""
    pid, ours = stub
    if WAITING.pop(pid, False) is not None:  # it died and was reaped: the job starts as without one
        ours.close()
        return None
    try:
        socket.send_fds(ours, [data], fds)
        said = ours.recv(4096)
    except OSError:
        said = None
    finally:
        ours.close()
    if said is None:
        drop_stub((pid, ours))
        return None
    return os.fsdecode(said)


def drop_stub(stub: tuple | None) -> None:
    """Kill and reap a stub not to be used."""
    if stub is None:
        return
    pid, ours = stub
    ours.close()
    if WAITING.pop(pid, False) is not None:
        return  # already reaped
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def enter(cgroups: list, cpus: tuple = ()) -> None:
    """Between fork and exec: pin this process to `cpus` (when given), then move it into each cgroup
    (a cgroup.procs file descriptor)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    for fd in cgroups:
        os.write(fd, b"0")


def end_every_other_process() -> bool:
    """SIGKILL everything in the sandbox but its init and this zygote; True once they are gone."""
    me = os.getpid()
    try:
        os.kill(-1, signal.SIGKILL)  # every process we may signal, except init and ourselves
    except ProcessLookupError:
        pass  # nobody else was left
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
        if not others:
            return True
        time.sleep(0.002)
    return False


def empty(folder: str, keep: set) -> bool:
    """Delete what is in `folder` but the paths in `keep` and the folders on the way to them.

    True when everything else went.
    """
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return True
    ok = True
    for name in names:
        path = os.path.join(folder, name)
        if path in keep:
            continue
        try:
            if any(k.startswith(path + "/") for k in keep):
                ok = empty(path, keep) and ok
            elif os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except (OSError, RecursionError):  # a tree deeper than the interpreter's stack: the sandbox is retired
            ok = False
    return ok
