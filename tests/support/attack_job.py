"""A job (tests/integration/test_attack_sandbox.py) that tries every way at the process that started it and at
its sandbox's init, and at the calls that make new namespaces or reach the kernel; prints what each gave."""

import ctypes
import errno
import os
import platform
import subprocess
import threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
X86 = platform.machine() == "x86_64"
NR = {  # x86_64, aarch64
    "clone": (56, 220),
    "clone3": (435, 435),
    "bpf": (321, 280),
    "keyctl": (250, 219),
    "mount": (165, 40),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "setns": (308, 268),
}


def sys_nr(name):
    return NR[name][0 if X86 else 1]


def said(ret):
    return "OK" if ret != -1 else errno.errorcode[ctypes.get_errno()]


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm(call, pid):
    buf = ctypes.create_string_buffer(16)
    local, remote = IoVec(ctypes.cast(buf, ctypes.c_void_p), 16), IoVec(0x10000, 16)
    fn = getattr(libc, call)
    vec = ctypes.POINTER(IoVec)
    fn.argtypes = [ctypes.c_int, vec, ctypes.c_ulong, vec, ctypes.c_ulong, ctypes.c_ulong]
    return said(fn(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))


def open_mem(path):
    try:
        os.close(os.open(path, os.O_RDWR))
        return "OK"
    except OSError as exc:
        return errno.errorcode[exc.errno]


parent = os.getppid()
print("parent", parent)
print("ptrace-parent", said(libc.ptrace(16, parent, None, None)))  # PTRACE_ATTACH
print("ptrace-init", said(libc.ptrace(16, 1, None, None)))
print("seize-parent", said(libc.ptrace(0x4206, parent, None, None)))  # PTRACE_SEIZE
print("mem-parent", open_mem(f"/proc/{parent}/mem"))
print("mem-parent-task", open_mem(f"/proc/{parent}/task/{parent}/mem"))
print("mem-init", open_mem("/proc/1/mem"))
print("mem-init-task", open_mem("/proc/1/task/1/mem"))
print("vm-write-parent", vm("process_vm_writev", parent))
print("vm-read-parent", vm("process_vm_readv", parent))
print("unshare-user", said(libc.unshare(0x10000000)))
print("unshare-mount", said(libc.unshare(0x00020000)))
ret = libc.syscall(sys_nr("clone"), 0x10000000 | 17, 0, 0, 0, 0)  # CLONE_NEWUSER | SIGCHLD
if ret == 0:
    os._exit(0)
print("clone-user", said(ret))
print("clone3", said(libc.syscall(sys_nr("clone3"), 0, 0)))
print("setns", said(libc.syscall(sys_nr("setns"), 0, 0)))
print("mount", said(libc.syscall(sys_nr("mount"), b"none", b"/tmp", b"tmpfs", 0, 0)))
print("bpf", said(libc.syscall(sys_nr("bpf"), 0, 0, 0)))
print("keyctl", said(libc.syscall(sys_nr("keyctl"), 0, -3, 0)))  # KEYCTL_GET_KEYRING_ID, the session keyring
print("perf_event_open", said(libc.syscall(sys_nr("perf_event_open"), 0, 0, -1, -1, 0)))
print("userfaultfd", said(libc.syscall(sys_nr("userfaultfd"), 0)))
print("io_uring_setup", said(libc.syscall(sys_nr("io_uring_setup"), 1, 0)))
if X86:
    print("x32", said(libc.syscall(39 | 0x40000000)))  # getpid through the x32 ABI


def filter_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith("Seccomp:"))


print("filter", filter_of("self"))
if parent != 1:  # the zygote; bubblewrap's init (pid 1) is covered
    print("parent-filter", filter_of(parent))
# What a job does every day still works: threads (clone3 -> clone), fork, a subprocess.
box = []
t = threading.Thread(target=lambda: box.append("thread OK"))
t.start()
t.join()
print(box[0])
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(subprocess.run(["sh", "-c", "echo subprocess OK"], capture_output=True, text=True).stdout.strip())
