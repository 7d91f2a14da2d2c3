"""The system-call filter's program: its structure, and what it answers, run through a small BPF interpreter.

The interpreter executes the program the way the kernel does for the
opcodes it uses (load a word of struct seccomp_data, compare, return), so
each claim below is about the very bytes bubblewrap is given.
tests/integration/test_attack_sandbox.py proves the same filter in a real kernel.
"""

from __future__ import annotations

import errno
import struct

import pytest

from dctoolkit.nodes.worker import seccomp
from dctoolkit.nodes.worker.seccomp import (
    AUDIT_ARCH_AARCH64,
    AUDIT_ARCH_X86_64,
    RET_ENOSYS,
    RET_EPERM,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_KILL_PROCESS,
    SYSCALLS,
)

AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028
ARCH = {"x86_64": AUDIT_ARCH_X86_64, "aarch64": AUDIT_ARCH_AARCH64}
SIGCHLD = 17
# Calls every program makes: read, write, openat, mmap, exit_group, getpid.
EVERYDAY = {"x86_64": (0, 1, 257, 9, 231, 39), "aarch64": (63, 64, 56, 222, 94, 172)}
# What glibc's pthread_create and fork pass to clone, and what vfork-style posix_spawn passes.
THREAD_FLAGS = 0x003D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
FORK_FLAGS = 0x01200000 | SIGCHLD  # CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
SPAWN_FLAGS = 0x00004100 | SIGCHLD  # CLONE_VM|CLONE_VFORK|SIGCHLD


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]


def run(nr: int, arch: int, args: tuple[int, ...] = (0,) * 6, program: bytes | None = None) -> int:
    """What the filter returns for one call (struct seccomp_data: nr, arch, instruction pointer, six args)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    insns = instructions(program or seccomp.program())
    pc, acc = 0, 0
    for _step in range(len(insns)):  # every jump is forward: a program runs at most once through
        code, jt, jf, k = insns[pc]
        if code == seccomp.BPF_LD_W_ABS:
            acc, pc = struct.unpack_from("<I", data, k)[0], pc + 1
        elif code == seccomp.BPF_JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == seccomp.BPF_JGE_K:
            pc += 1 + (jt if acc >= k else jf)
        elif code == seccomp.BPF_JSET_K:
            pc += 1 + (jt if acc & k else jf)
        elif code == seccomp.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"instruction {pc}: opcode {code:#x} the filter should not use")
    raise AssertionError("the program ran off its end")


def test_the_program_is_whole_sock_filters_the_kernel_accepts():
    program = seccomp.program()
    insns = instructions(program)
    assert len(program) % 8 == 0 and 0 < len(insns) <= seccomp.BPF_MAXINSNS
    for at, (code, jt, jf, k) in enumerate(insns):
        if code == seccomp.BPF_LD_W_ABS:
            # Aligned words of struct seccomp_data (64 bytes): nr, arch, the low half of an argument.
            args = {seccomp.OFFSET_ARG0_LOW + seccomp.ARG_BYTES * i for i in range(6)}
            assert k in {seccomp.OFFSET_NR, seccomp.OFFSET_ARCH, *args}, (at, k)
        elif code != seccomp.BPF_RET_K:
            assert at + 1 + max(jt, jf) < len(insns), f"instruction {at} jumps past the end"
    assert insns[-1][0] == seccomp.BPF_RET_K, "the last instruction returns"
    assert insns[0] == (seccomp.BPF_LD_W_ABS, 0, 0, seccomp.OFFSET_ARCH), "the architecture is checked first"


@pytest.mark.parametrize("arch", sorted(SYSCALLS))
@pytest.mark.parametrize("name", seccomp.DENIED)
def test_every_denied_call_gets_eperm(arch, name):
    if name not in SYSCALLS[arch]:
        assert (arch, name) in {("aarch64", n) for n in ("iopl", "ioperm", "uselib", "_sysctl")}
        return
    assert run(SYSCALLS[arch][name], ARCH[arch]) == RET_EPERM


@pytest.mark.parametrize("arch", sorted(SYSCALLS))
def test_everyday_calls_threads_forks_and_spawns_are_allowed(arch):
    for nr in EVERYDAY[arch]:
        assert run(nr, ARCH[arch]) == SECCOMP_RET_ALLOW, nr
    clone = SYSCALLS[arch]["clone"]
    for flags in (THREAD_FLAGS, FORK_FLAGS, SPAWN_FLAGS, 0x80 | SIGCHLD):  # 0x80 in clone() is the exit signal's
        assert run(clone, ARCH[arch], (flags, 0, 0, 0, 0, 0)) == SECCOMP_RET_ALLOW, hex(flags)


@pytest.mark.parametrize("arch", sorted(SYSCALLS))
@pytest.mark.parametrize(
    "flag", ["NEWUSER", "NEWNS", "NEWPID", "NEWNET", "NEWIPC", "NEWUTS", "NEWCGROUP"], ids=lambda f: f"CLONE_{f}"
)
def test_clone_into_a_new_namespace_is_refused(arch, flag):
    bit = getattr(seccomp, f"CLONE_{flag}")
    clone = SYSCALLS[arch]["clone"]
    assert run(clone, ARCH[arch], (FORK_FLAGS | bit, 0, 0, 0, 0, 0)) == RET_EPERM
    # Only the low half of the flags word counts: a high half of ones is no namespace.
    assert run(clone, ARCH[arch], (FORK_FLAGS | 0xFFFFFFFF00000000, 0, 0, 0, 0, 0)) == SECCOMP_RET_ALLOW


@pytest.mark.parametrize("arch", sorted(SYSCALLS))
def test_clone3_gets_enosys_so_the_c_library_falls_back_to_clone(arch):
    assert run(SYSCALLS[arch]["clone3"], ARCH[arch]) == RET_ENOSYS
    assert RET_ENOSYS & 0xFFFF == errno.ENOSYS and RET_EPERM & 0xFFFF == errno.EPERM


def test_the_x32_abi_is_refused_on_x86_64():
    for nr in (39, 101, 0, 521):  # getpid, ptrace (x86_64's), read, ptrace (x32's own number)
        assert run(nr | seccomp.X32_SYSCALL_BIT, AUDIT_ARCH_X86_64) == RET_EPERM


@pytest.mark.parametrize("arch", [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, 0, 0xFFFFFFFF], ids=hex)
def test_another_architecture_is_killed_whatever_it_calls(arch):
    # i386's ptrace is 26 and its getpid 20: numbers of the allowed tables would mean other calls there.
    for nr in (0, 20, 26, 101, 117):
        assert run(nr, arch) == SECCOMP_RET_KILL_PROCESS


def test_the_tables_hold_the_kernels_numbers():
    # Spot checks against asm/unistd_64.h and asm-generic/unistd.h (the calls that matter most).
    x86, arm = SYSCALLS["x86_64"], SYSCALLS["aarch64"]
    assert (x86["ptrace"], x86["process_vm_writev"], x86["clone"], x86["clone3"], x86["unshare"]) == (
        101,
        311,
        56,
        435,
        272,
    )
    assert (arm["ptrace"], arm["process_vm_writev"], arm["clone"], arm["clone3"], arm["unshare"]) == (
        117,
        271,
        220,
        435,
        97,
    )
    for arch, table in SYSCALLS.items():
        assert len(set(table.values())) == len(table), f"{arch}: two calls share a number"
        assert set(table) - set(seccomp.DENIED) - set(seccomp.MODE_ARGUMENT) == {"clone", "clone3", "openat2"}, arch
    assert (x86["chmod"], x86["fchmodat"], x86["openat"], arm["fchmodat"], arm["openat"]) == (90, 268, 257, 53, 56)


def test_a_jump_too_far_or_to_nowhere_is_refused_when_assembling():
    far = [seccomp.Insn(seccomp.BPF_JEQ_K, 1, jt="end")]
    far += [seccomp.Insn(seccomp.BPF_RET_K, SECCOMP_RET_ALLOW)] * 256
    far += [seccomp.Label("end"), seccomp.Insn(seccomp.BPF_RET_K, RET_EPERM)]
    with pytest.raises(ValueError) as err:
        seccomp.assemble(far)
    assert str(err.value) == "instruction 0: label 'end' is 256 instructions away (0 to 255 allowed)"
    with pytest.raises(ValueError) as err:
        seccomp.assemble([seccomp.Insn(seccomp.BPF_JEQ_K, 1, jt="gone")])
    assert str(err.value) == "instruction 0: no label 'gone'"


@pytest.mark.parametrize("arch", sorted(SYSCALLS))
@pytest.mark.parametrize("name", sorted(seccomp.MODE_ARGUMENT))
def test_a_set_user_or_group_id_mode_is_refused_and_any_other_mode_allowed(arch, name):
    if name not in SYSCALLS[arch]:
        assert arch == "aarch64" and name in ("chmod", "open", "creat", "mknod")  # only the *at forms there
        return
    nr, at = SYSCALLS[arch][name], seccomp.MODE_ARGUMENT[name]

    def with_mode(mode: int) -> tuple[int, ...]:
        args = [0] * 6
        args[at] = mode
        return tuple(args)

    for mode in (0o4755, 0o2755, 0o6777, 0o104755):
        assert run(nr, ARCH[arch], with_mode(mode)) == RET_EPERM, oct(mode)
    for mode in (0, 0o644, 0o755, 0o1777, 0o100644, 0xFFFFFFFF00000000 | 0o755):
        assert run(nr, ARCH[arch], with_mode(mode)) == SECCOMP_RET_ALLOW, oct(mode)


@pytest.mark.parametrize("arch", sorted(SYSCALLS))
def test_openat2_gets_enosys_its_mode_is_out_of_reach(arch):
    assert run(SYSCALLS[arch]["openat2"], ARCH[arch]) == RET_ENOSYS
