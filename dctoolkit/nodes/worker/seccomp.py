"""The system-call filter every job runs under: a classic BPF program, built here in pure Python.

bubblewrap loads it (`--seccomp FD`) just before it starts the sandbox's
first program, so it holds for the warm sandboxes' zygote and for every job,
fresh or warm, and for everything they start; a filter cannot be removed.

What it refuses (EPERM) is what a batch job never needs and what would let it
reach past its sandbox: other processes' memory (ptrace, process_vm_*,
pidfd_getfd, process_madvise, kcmp), the kernel itself (modules, kexec, bpf,
perf events, keyrings, userfaultfd, io_uring, raw I/O ports, reboot, swap,
accounting, quotas), mounts and file handles, and new namespaces: setns,
unshare and clone with a namespace flag.  A user namespace would hand a job
every capability inside it, the kernel's widest door for a process with none.
clone3 gets ENOSYS: its flags lie in memory, out of a filter's reach, and on
ENOSYS the C library falls back to clone, whose flags a filter can read (the
reasoning of Docker's and Flatpak's default profiles).

It also refuses to make a set-user-ID or set-group-ID file (chmod, fchmod,
fchmodat, fchmodat2, open, openat, creat, mknod, mknodat with S_ISUID or
S_ISGID in the mode): inside the sandbox no_new_privs makes such a file
harmless, but one left in a writable host folder (a read-write granted
folder, a `:rw` DCT_SANDBOX_PATHS entry) would run on the host as the node's
user, root on a node running as root.  openat2 gets ENOSYS (its mode lies in
memory; the C library's open never uses it).

Only x86_64 (its 64-bit calls: the x32 ABI is refused) and aarch64 are
allowed; a program of any other architecture (a 32-bit binary) is killed, as
its calls have other numbers.
"""

from __future__ import annotations

import errno
import functools
import struct
from dataclasses import dataclass

# linux/audit.h
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
# x32 calls are x86_64 calls with this bit set (asm/unistd.h __X32_SYSCALL_BIT).
X32_SYSCALL_BIT = 0x40000000

# linux/seccomp.h
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
RET_EPERM = SECCOMP_RET_ERRNO | errno.EPERM
RET_ENOSYS = SECCOMP_RET_ERRNO | errno.ENOSYS

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16  # both architectures are little-endian: the low 32 bits come first
ARG_BYTES = 8  # each of args[6] is a __u64
# sys/stat.h: the mode bits that make a program run as its file's owner or group.
S_ISUID = 0o4000
S_ISGID = 0o2000

# linux/sched.h: every CLONE_NEW* flag clone() takes (CLONE_NEWTIME, 0x80, is clone3-only:
# in clone()'s flags that bit belongs to the exit signal).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NAMESPACES = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
)

# linux/bpf_common.h, linux/filter.h
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
BPF_MAXINSNS = 4096

DENIED = (
    # other processes' memory and files
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "process_madvise",
    "kcmp",
    # the kernel
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "uselib",
    "_sysctl",
    # mounts and file handles
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    # namespaces (clone and clone3 have their own rules)
    "setns",
    "unshare",
)

# Calls that set a file's mode: which argument holds the mode (0-based).  A mode with S_ISUID or S_ISGID
# gets EPERM.  (mkdir ignores both bits; a folder's set-group-ID comes from its parent.)
MODE_ARGUMENT = {
    "chmod": 1,
    "fchmod": 1,
    "fchmodat": 2,
    "fchmodat2": 2,
    "open": 2,
    "openat": 3,
    "creat": 1,
    "mknod": 1,
    "mknodat": 2,
}

# System-call numbers: x86_64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h.
# A call an architecture does not have is absent from its table.
SYSCALLS = {
    "x86_64": {
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "pidfd_getfd": 438,
        "process_madvise": 440,
        "kcmp": 312,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "iopl": 172,
        "ioperm": 173,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "acct": 163,
        "quotactl": 179,
        "quotactl_fd": 443,
        "lookup_dcookie": 212,
        "uselib": 134,
        "_sysctl": 156,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "move_mount": 429,
        "open_tree": 428,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "open_by_handle_at": 304,
        "name_to_handle_at": 303,
        "setns": 308,
        "unshare": 272,
        "clone": 56,
        "clone3": 435,
        "chmod": 90,
        "fchmod": 91,
        "fchmodat": 268,
        "fchmodat2": 452,
        "open": 2,
        "openat": 257,
        "creat": 85,
        "mknod": 133,
        "mknodat": 259,
        "openat2": 437,
    },
    "aarch64": {
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "pidfd_getfd": 438,
        "process_madvise": 440,
        "kcmp": 272,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "acct": 89,
        "quotactl": 60,
        "quotactl_fd": 443,
        "lookup_dcookie": 18,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "move_mount": 429,
        "open_tree": 428,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "open_by_handle_at": 265,
        "name_to_handle_at": 264,
        "setns": 268,
        "unshare": 97,
        "clone": 220,
        "clone3": 435,
        "fchmod": 52,
        "fchmodat": 53,
        "fchmodat2": 452,
        "openat": 56,
        "mknodat": 33,
        "openat2": 437,
    },
}
ARCHES = {"x86_64": AUDIT_ARCH_X86_64, "aarch64": AUDIT_ARCH_AARCH64}


@dataclass(frozen=True)
class Insn:
    """One sock_filter; a jump names its targets by label until `assemble` resolves them."""

    code: int
    k: int = 0
    jt: int | str = 0
    jf: int | str = 0


@dataclass(frozen=True)
class Label:
    name: str


def _arch_block(arch: str) -> list[Insn | Label]:
    """The rules for one architecture's calls; the arch has been checked."""
    table = SYSCALLS[arch]
    out: list[Insn | Label] = [Insn(BPF_LD_W_ABS, OFFSET_NR)]
    if arch == "x86_64":
        out.append(Insn(BPF_JGE_K, X32_SYSCALL_BIT, jt=f"{arch}-eperm"))
    out.append(Insn(BPF_JEQ_K, table["clone3"], jt=f"{arch}-enosys"))
    out.append(Insn(BPF_JEQ_K, table["openat2"], jt=f"{arch}-enosys"))
    out.append(Insn(BPF_JEQ_K, table["clone"], jt=f"{arch}-clone"))
    out += [Insn(BPF_JEQ_K, table[name], jt=f"{arch}-eperm") for name in DENIED if name in table]
    modes = sorted({index for name, index in MODE_ARGUMENT.items() if name in table})
    out += [
        Insn(BPF_JEQ_K, table[name], jt=f"{arch}-mode{index}") for name, index in MODE_ARGUMENT.items() if name in table
    ]
    out.append(Insn(BPF_RET_K, SECCOMP_RET_ALLOW))
    for index in modes:
        out += [
            Label(f"{arch}-mode{index}"),
            Insn(BPF_LD_W_ABS, OFFSET_ARG0_LOW + ARG_BYTES * index),  # the mode's low half (mode_t is 32 bits)
            Insn(BPF_JSET_K, S_ISUID | S_ISGID, jt=f"{arch}-eperm"),
            Insn(BPF_RET_K, SECCOMP_RET_ALLOW),
        ]
    out += [
        Label(f"{arch}-clone"),
        Insn(BPF_LD_W_ABS, OFFSET_ARG0_LOW),  # clone's flags, on both architectures
        Insn(BPF_JSET_K, CLONE_NAMESPACES, jt=f"{arch}-eperm"),
        Insn(BPF_RET_K, SECCOMP_RET_ALLOW),
        Label(f"{arch}-eperm"),
        Insn(BPF_RET_K, RET_EPERM),
        Label(f"{arch}-enosys"),
        Insn(BPF_RET_K, RET_ENOSYS),
    ]
    return out


def instructions() -> list[Insn | Label]:
    """The whole filter, labels unresolved: dispatch on the architecture, then its block."""
    out: list[Insn | Label] = [Insn(BPF_LD_W_ABS, OFFSET_ARCH)]
    out += [Insn(BPF_JEQ_K, ARCHES[arch], jt=arch) for arch in SYSCALLS]
    out.append(Insn(BPF_RET_K, SECCOMP_RET_KILL_PROCESS))  # an architecture we have no numbers for
    for arch in SYSCALLS:
        out += [Label(arch), *_arch_block(arch)]
    return out


def assemble(items: list[Insn | Label]) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) for each instruction, jumps turned into forward offsets.

    Raises ValueError for a jump backwards, too far (a classic BPF offset is
    one byte) or to a label that is not there.
    """
    where: dict[str, int] = {}
    insns: list[Insn] = []
    for item in items:
        if isinstance(item, Label):
            where[item.name] = len(insns)
        else:
            insns.append(item)

    def offset(at: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        if target not in where:
            raise ValueError(f"instruction {at}: no label {target!r}")
        jump = where[target] - at - 1
        if not 0 <= jump <= 255:
            raise ValueError(f"instruction {at}: label {target!r} is {jump} instructions away (0 to 255 allowed)")
        return jump

    return [(i.code, offset(at, i.jt), offset(at, i.jf), i.k) for at, i in enumerate(insns)]


@functools.cache
def program() -> bytes:
    """The filter as bubblewrap's --seccomp reads it: struct sock_filter after struct sock_filter."""
    insns = assemble(instructions())
    if len(insns) > BPF_MAXINSNS:
        raise ValueError(f"the filter has {len(insns)} instructions; the kernel takes at most {BPF_MAXINSNS}")
    # "=": native byte order (both architectures are little-endian), no padding: u16 code, u8 jt, u8 jf, u32 k.
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in insns)
