"""How a job is handed to its sandbox: which devices, which refusals, and what travels where.

Pure functions, and `sandbox.launch` read back without starting anything:
tests/integration/test_attack_sandbox.py starts real ones.
"""

from __future__ import annotations

import os

import pytest

from dctoolkit.jobs import jobenv
from dctoolkit.nodes.worker import runner, sandbox, tasks, zygote
from dctoolkit.nodes.worker.sandbox import Fence

DEV = [
    "/dev/nvidia0",
    "/dev/nvidia1",
    "/dev/nvidia10",
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
    "/dev/nvidia-nvswitch0",
    "/dev/nvidia-nvlink",
    "/dev/nvidia-caps",
    "/dev/nvidia-caps/nvidia-cap1",
    "/dev/nvidia-caps/nvidia-cap2",
]
CONTROL = [
    "/dev/nvidia-caps/nvidia-cap1",
    "/dev/nvidia-caps/nvidia-cap2",
    "/dev/nvidia-modeset",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidiactl",
]


def test_a_gpu_job_gets_its_own_gpus_and_the_control_devices_only():
    assert sandbox.gpu_devices(DEV, [1]) == sorted([*CONTROL, "/dev/nvidia1"])
    assert sandbox.gpu_devices(DEV, [0, 10]) == sorted([*CONTROL, "/dev/nvidia0", "/dev/nvidia10"])


def test_a_job_without_gpus_gets_no_gpu_device_at_all():
    assert sandbox.gpu_devices(DEV, []) == []


def test_a_gpu_the_node_does_not_have_is_not_made_up():
    assert sandbox.gpu_devices(["/dev/nvidiactl", "/dev/nvidia0"], [3]) == ["/dev/nvidiactl"]


def test_fences_on_other_gpus_are_other_warm_sandboxes():
    assert Fence(workdir="", gpu_indices=(0,)) != Fence(workdir="", gpu_indices=(1,))
    assert hash(Fence(workdir="", gpu_indices=(0, 1))) == hash(Fence(workdir="", gpu_indices=(0, 1)))


def test_inside_the_sandbox_cuda_counts_the_jobs_own_gpus_from_zero():
    assert tasks.cuda_visible_devices([2, 5], Fence(workdir="", gpu_indices=(2, 5))) == "0,1"
    assert tasks.cuda_visible_devices([2, 5], None) == "2,5", "unfenced, every GPU is there"
    assert tasks.cuda_visible_devices([], Fence(workdir="")) == ""


LOADER_REFUSAL = (
    "may not be set by a job: it makes programs load code the job names; set it inside your job's script instead"
)


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_AUDIT", "GCONV_PATH", "GLIBC_TUNABLES", "ld_library_path"])
def test_a_stored_loader_variable_stops_the_job_before_it_starts(name):
    assert runner.start_refusal({"A": "1", name: "/tmp/x.so"}, []) == (
        f"not started: environment: '{name}' {LOADER_REFUSAL}"
    )


def test_a_stored_environment_over_the_cap_stops_the_job():
    at_cap = {"PAD": "x" * (jobenv.MAX_ENV_AND_ARGS_BYTES - len("PAD") - 2 - len("arg") - 1)}
    assert runner.start_refusal(at_cap, ["arg"]) == ""
    assert runner.start_refusal(at_cap, ["arg!"]) == (
        "not started: environment and arguments take 65,537 bytes; the limit is 65,536"
    )


@pytest.mark.parametrize(
    ("environment", "arguments", "why"),
    [
        ({"A": "x\0y"}, [], "environment: A holds a NUL byte, which no program can be given"),
        ({}, ["ok", "x\0--bind"], "arguments: argument 2 holds a NUL byte, which no program can be given"),
        ({"A": 1}, [], "environment: A is not text"),
        ({"A": "\ud800"}, [], "environment: A is not valid text (a lone surrogate that has no UTF-8 form)"),
        (["A=1"], [], "its stored environment or arguments are not a mapping and a list; submit it again"),
        ({}, "a b", "its stored environment or arguments are not a mapping and a list; submit it again"),
    ],
)
def test_what_no_program_can_be_given_stops_the_job(environment, arguments, why):
    assert runner.start_refusal(environment, arguments) == f"not started: {why}"


def test_a_nul_never_reaches_bubblewraps_argument_list():
    # Each NUL would end one argument and begin another: "--bind / /host" smuggled in.
    with pytest.raises(sandbox.LaunchError) as err:
        sandbox.nul_separated(["--setenv", "A", "x\0--bind\0/\0/host"])
    assert str(err.value) == "an argument or environment variable holds a NUL byte, which no program can be given"
    assert sandbox.nul_separated(["--setenv", "A", "x y=z"]) == b"--setenv\0A\0x y=z\0"


def test_bubblewraps_command_line_holds_nothing_of_the_job_but_its_program(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SECRET_VALUE": "marker-in-env", "HOME": str(tmp_path)}
    with sandbox.launch(["./job.sh", "arg"], Fence(workdir=str(tmp_path)), env) as cmd:
        args_fd, filter_fd = cmd.fds
        assert cmd.argv == [sandbox.bwrap_path(), "--args", str(args_fd), "--", "./job.sh", "arg"]
        given = os.pread(args_fd, 1 << 20, 0).split(b"\0")
        program = os.pread(filter_fd, 1 << 20, 0)
    assert given[-1] == b"", "every argument ends with a NUL"
    given = [a.decode() for a in given[:-1]]
    clear = given.index("--clearenv")
    assert given[clear + 1 :] == [
        *("--setenv", "PATH", "/usr/bin:/bin"),
        *("--setenv", "SECRET_VALUE", "marker-in-env"),
        *("--setenv", "HOME", str(tmp_path)),
        *("--seccomp", str(filter_fd)),
    ], "the job's variables, after the node's are cleared, and the filter last"
    assert given[clear - 5 : clear] == ["--bind", str(tmp_path), str(tmp_path), "--chdir", str(tmp_path)]
    assert given[given.index("--proc") : given.index("--proc") + 6] == [
        "--proc",
        "/proc",
        "--tmpfs",
        "/proc/1",
        "--remount-ro",
        "/proc/1",
    ], "bubblewrap's init is covered"
    assert program == sandbox.seccomp.program()
    with pytest.raises(OSError):
        os.fstat(args_fd)  # closed on leaving


def test_too_many_variables_for_bubblewrap_is_a_reason_not_a_crash(tmp_path):
    env = {f"V{i}": "" for i in range(3000)}
    with pytest.raises(sandbox.LaunchError) as err, sandbox.launch(["true"], Fence(workdir=str(tmp_path)), env):
        pass
    assert str(err.value).startswith("3,000 environment variables are more than bubblewrap takes here ("), err.value


def test_the_zygotes_message_carries_any_text_exactly():
    env = {"A": 'quote" back\\slash\nnew\tline \x01 é 😀', "EMPTY": "", "EQ": "a=b=c"}
    request = zygote.decode_request(zygote.encode_request(["./job.sh", "", "x y"], env, "/tmp/job"))
    assert request["cwd"] == "/tmp/job"
    assert request["argv"] == [b"./job.sh", b"", b"x y"]
    assert request["env"] == {k.encode(): v.encode() for k, v in env.items()}


def test_every_job_within_the_cap_fits_in_one_message_to_its_zygote():
    # Control characters, which JSON would write six bytes each: the framing copies them as they are.
    worst = {"PAD": "\x01" * (jobenv.MAX_ENV_AND_ARGS_BYTES - 5)}
    node_adds = runner.build_env({}, workdir="/" + "w" * 200, extra={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    request = zygote.encode_request(["/opt/python/bin/python3", "job.py"], {**node_adds, **worst}, "/" + "w" * 200)
    assert runner.start_refusal(worst, []) == ""
    assert len(request) < zygote.MAX_REQUEST_BYTES


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"cwd": "/", "argc": 2}\0only-one',
        b'{"cwd": "/", "argc": 0}',
        b'{"cwd": "/", "argc": 1}\0a\0NOEQUALS',
    ],
)
def test_a_message_the_zygote_cannot_read_is_refused(data):
    with pytest.raises(ValueError):
        zygote.decode_request(data)


def test_a_stored_container_the_node_does_not_offer_stops_the_job():
    # "/" would be the job's root with nothing of the host covered: every user's files, the database.
    assert tasks.container_refusal("/", ["/srv/roots/debian"]) == (
        "not started: container / is not offered by this node (it offers: /srv/roots/debian); "
        "submit it again with a container './dct nodes' lists"
    )
    assert tasks.container_refusal("/srv/roots/debian", ["/srv/roots/debian"]) == ""
    assert tasks.container_refusal("", []) == ""
    assert tasks.container_refusal("/srv/roots/debian", []).startswith("not started: container /srv/roots/debian is")


def _stub_answer(message: bytes) -> tuple[bytes, int]:
    """A real stub (zygote.serve_as_stub in a forked child, no cgroups) handed `message`: what it said
    before closing its socket, and its exit status."""
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            zygote.serve_as_stub(theirs, [])
        finally:
            os._exit(127)
    theirs.close()
    assert ours.recv(16) == zygote.ENTERED
    with open(os.devnull, "wb") as null:
        socket.send_fds(ours, [message], [null.fileno(), null.fileno()])
    said = ours.recv(4096)
    ours.close()
    return said, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_stub_that_execs_closes_its_socket_saying_nothing():
    said, status = _stub_answer(zygote.encode_request(["/bin/sh", "-c", "exit 3"], {}, "/"))
    assert (said, status) == (b"", 3), "the job's own exit status, nothing said"


@pytest.mark.parametrize(
    "message",
    [
        b'{"cwd": "/", "argc": 2}\0/bin/true',  # argc beyond the items
        b'{"argc": 1}\0/bin/true',  # no cwd
        zygote.encode_request(["/no/such/program"], {}, "/"),
    ],
)
def test_a_stub_that_cannot_exec_says_why_never_passing_its_exit_for_the_jobs(message):
    said, status = _stub_answer(message)
    assert said, "a stub that did not exec must say why: silence reads as exec'd"
    assert status == 127
