"""Slurm and PBS batch scripts: what their #SBATCH / #PBS lines mean here, on a corpus of real-looking
scripts (tests/data/slurm, tests/data/pbs; each names the documentation it follows) and on each form."""

from datetime import datetime
from pathlib import Path

import pytest

from dctoolkit.jobs.intake import batch, keys
from dctoolkit.jobs.intake.flags import script_options
from dctoolkit.jobs.intake.parse import SubmissionError, parse_submission
from dctoolkit.jobs.jobenv import fill_runtime

DATA = Path(__file__).resolve().parent.parent / "data"
MARK = batch.JOB_ID_MARKER


def parsed(text: str, name: str = "job.sh", cluster: int = 42):
    return parse_submission(text, name, cluster=cluster)


def problems(text: str, name: str = "job.sh") -> list[str]:
    with pytest.raises(SubmissionError) as caught:
        parsed(text, name)
    return str(caught.value).splitlines()


def script(*directives: str, shebang: str = "#!/bin/bash\n") -> str:
    return shebang + "".join(f"#SBATCH {d}\n" for d in directives) + "echo hi\n"


# --- the corpus ----------------------------------------------------------------------------------

# file -> (jobs, name, cpus, memory MB, GPUs, seconds, first stdout, first stderr, array ids of first/last)
ACCEPTED = {
    "slurm/hku_array.sh": (22, "array_job", 1, 6144, 0, 3600, "array_job_42_1.out", "array_job_42_1.err", ("1", "22")),
    "slurm/bear_short_time.sh": (
        4,
        "bear_short_time.sh",
        1,
        256,
        0,
        300,
        "slurm-42_2.out",
        "slurm-42_2.out",
        ("2", "5"),
    ),
    "slurm/sigma2_step_throttle.sh": (8, "steps", 4, 2000, 0, 900, "slurm-42_0.out", "slurm-42_0.out", ("0", "56")),
    "slurm/sav_multitask.sh": (
        5,
        "array_test",
        8,
        256,
        0,
        None,
        "out_array_42_1.out",
        "err_array_42_1.err",
        ("1", "20"),
    ),
    "slurm/gpu_training.sh": (1, "train", 8, 32768, 2, 129600, f"train-{MARK}.log", f"train-{MARK}.log", None),
    "pbs/select_chunk.sh": (1, "fit", 4, 8192, 0, 1800, "fit.log", "fit.log", None),
    "pbs/torque_array.sh": (54, "sweep", 2, 2048, 0, 3600, f"sweep.o{MARK}", f"sweep.e{MARK}", ("0", "80")),
    # Real scripts from public repositories (each names its source): %J is the job id in a batch script's
    # file name, --mem-per-cpu counts per CPU, --exclusive is accepted with a note.
    "slurm/arcca_array_job.sh": (
        5,
        "arraytest",
        1,
        256,
        0,
        None,
        f"output-42_0-{MARK}.o",
        f"output-42_0-{MARK}.o",
        ("0", "4"),
    ),
    "slurm/brown_ccv_job_array.sh": (
        4,
        "arrayjob",
        1,
        4096,
        0,
        300,
        "arrayjob-42_1.out",
        "arrayjob-42_1.out",
        ("1", "4"),
    ),
    "slurm/breakit_exclusive.sh": (1, "test", 1, 256, 0, 120, f"slurm-{MARK}.out", f"slurm-{MARK}.out", None),
    "slurm/mmalnet_gpu_job.sh": (1, "TestJob", 1, 8000, 1, None, "test.out", "testError.err", None),
}
REFUSED = {
    "slurm/not_supported.sh": [
        "not_supported.sh:4: --nodes=2: a job runs on one node here (no multi-node jobs)",
        "not_supported.sh:5: --chdir=run1: give the absolute path of a folder granted to you",
        "not_supported.sh:8: 'slurm-%N.out': %N (the node's name) is not known",
        "not_supported.sh:9: --frobnicate is not an sbatch option",
        "not_supported.sh:10: 'soon' is not a Slurm time",
    ],
    "pbs/pbs_refused.sh": [
        "pbs_refused.sh:3: -l nodes=4:ppn=16: a job runs on one node here",
        "pbs_refused.sh:6: -u someone: a job runs as the user who submits it",
    ],
    "pbs/malaria_nodes_refused.sh": ["malaria_nodes_refused.sh:7: -l nodes=4:ppn=15: a job runs on one node here"],
}


# file -> (jobs, the labels its partition or queue asks for): `-p`/`--partition` and PBS `-q` are labels.
LABELLED = {
    "slurm/uchicago_array_partition.sh": (16, ("broadwl",)),
    "pbs/it4i_array.sh": (900, ("qprod",)),
    "slurm/poleval_gpu_job.sh": (1, ("plgrid-gpu-a100",)),
    "pbs/trento_select_queue.sh": (1, ("short_cpuQ",)),
}


@pytest.mark.parametrize("name", sorted(LABELLED))
def test_a_partition_or_queue_becomes_the_labels_a_node_must_have(name):
    submission = parsed((DATA / name).read_text(), name.split("/")[1])
    count, labels = LABELLED[name]
    assert len(submission.jobs) == count
    assert {job.labels for job in submission.jobs} == {labels}


def test_every_corpus_script_is_in_a_table():
    found = {f"{p.parent.name}/{p.name}" for p in DATA.glob("*/*.sh") if p.parent.name in ("slurm", "pbs")}
    assert found == set(ACCEPTED) | set(REFUSED) | set(LABELLED)
    for name in found:
        assert "http" in (DATA / name).read_text(), f"{name} names the documentation it follows"


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_a_corpus_script_means_what_sbatch_or_qsub_would(name):
    count, job_name, cpus, memory, gpus, seconds, stdout, stderr, array = ACCEPTED[name]
    sub = parsed((DATA / name).read_text(), Path(name).name)
    assert len(sub.jobs) == count
    first, last = sub.jobs[0], sub.jobs[-1]
    assert (first.name, first.request_cpus, first.request_memory_mb, first.request_gpus) == (
        job_name,
        cpus,
        memory,
        gpus,
    )
    assert first.max_runtime_seconds == seconds
    assert (first.stdout, first.stderr) == (stdout, stderr)
    assert first.executable.name == Path(name).name and sub.script == Path(name).name
    env = first.environment
    if name.startswith("slurm/"):
        assert env["SLURM_JOB_NAME"] == job_name
        assert env["SLURM_JOB_ID"] == "" and env["SLURMD_NODENAME"] == ""  # filled by the node
        if array:
            assert (env["SLURM_ARRAY_TASK_ID"], last.environment["SLURM_ARRAY_TASK_ID"]) == array
            assert env["SLURM_ARRAY_JOB_ID"] == "42"
            assert env["SLURM_ARRAY_TASK_COUNT"] == str(count)
        else:
            assert "SLURM_ARRAY_TASK_ID" not in env
    else:
        assert env["PBS_JOBNAME"] == job_name and env["NCPUS"] == str(cpus)
        if array:
            assert (env["PBS_ARRAY_INDEX"], last.environment["PBS_ARRAYID"]) == array


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_corpus_script_with_options_we_cannot_honour_is_refused_on_every_line_at_once(name):
    lines = problems((DATA / name).read_text(), Path(name).name)
    assert len(lines) == len(REFUSED[name]), lines
    for line, expected in zip(lines, REFUSED[name], strict=True):
        assert line.startswith(expected), (line, expected)


def test_real_gpu_scripts_from_public_repositories():
    # -N 1 --cpus-per-task=8 --gres=gpu:1 -t 1:00:00 -A ... -p ...; `srun python` gets the srun helper.
    (job,) = parsed((DATA / "slurm/poleval_gpu_job.sh").read_text(), "poleval_gpu_job.sh").jobs
    assert (job.request_cpus, job.request_gpus, job.max_runtime_seconds) == (8, 1, 3600)
    assert job.accounting_group == "plgexaile-gpu-a100"
    assert [i.name for i in job.inputs] == [batch.SRUN_HELPER]
    assert job.environment["SLURM_CPUS_PER_TASK"] == "8"
    # PBS Pro: select=1:ncpus=1:mem=2gb, walltime 0:05:00; qsub's default stream names.
    (pbs,) = parsed((DATA / "pbs/trento_select_queue.sh").read_text(), "trento_select_queue.sh").jobs
    assert (pbs.request_cpus, pbs.request_memory_mb, pbs.max_runtime_seconds) == (1, 2048, 300)
    assert (pbs.stdout, pbs.stderr) == (f"trento_select_queue.sh.o{MARK}", f"trento_select_queue.sh.e{MARK}")


def test_the_corpus_gpu_script_mails_at_the_end_and_notes_requeue():
    sub = parsed((DATA / "slurm/gpu_training.sh").read_text(), "gpu_training.sh")
    job = sub.jobs[0]
    assert (job.email, job.notification) == ("me@lab.org", "complete")
    assert [line for line, _ in sub.notes] == [11]
    assert "--requeue: accepted and not used" in sub.notes[0][1]


def test_a_pbs_script_without_a_shebang_runs_with_sh():
    sub = parsed((DATA / "pbs/torque_array.sh").read_text(), "torque_array.sh")
    assert sub.script_needs_shell
    assert not parsed(script("-c 1"), "x.sh").script_needs_shell


# --- recognising a script -----------------------------------------------------------------------


def test_a_batch_script_is_told_from_a_submission_file():
    assert batch.dialect_of("#!/bin/bash\n#SBATCH -c 2\necho\n") == "slurm"
    assert batch.dialect_of("#!/bin/bash\n# a comment\n\n#PBS -N x\necho\n") == "pbs"
    assert batch.dialect_of("#!/bin/sh\necho plain\n") == "slurm"  # sbatch runs a script with no directives
    assert batch.dialect_of("# a sweep\nexecutable = fit.py\nqueue 3\n") is None
    # Only the leading comment block holds directives, as sbatch reads them.
    assert batch.dialect_of("executable = a.sh\n#SBATCH -c 2\n") is None


def test_a_directive_after_the_first_command_is_not_read_and_a_note_says_so():
    sub = parsed("#!/bin/sh\n#SBATCH -c 2\necho start\n#SBATCH -c 8\n")
    assert sub.jobs[0].request_cpus == 2
    assert sub.notes[0][0] == 4 and "not read" in sub.notes[0][1]


def test_space_after_the_hash_is_a_plain_comment_as_in_slurm():
    assert parsed("#!/bin/sh\n# SBATCH --nodes=9\n#SBATCH -c 3\necho\n").jobs[0].request_cpus == 3


# --- each option ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30", 1800),
        ("5:30", 330),
        ("1:02:03", 3723),
        ("2-3", 2 * 86400 + 3 * 3600),
        ("2-3:04", 2 * 86400 + 3 * 3600 + 4 * 60),
        ("1-00:00:10", 86410),
        ("UNLIMITED", None),
    ],
)
def test_every_slurm_time_form(written, seconds):
    assert parsed(script(f"--time={written}")).jobs[0].max_runtime_seconds == seconds
    assert parsed(script(f"-t {written}")).jobs[0].max_runtime_seconds == seconds


@pytest.mark.parametrize(
    ("written", "indices", "step"),
    [
        ("0-9", list(range(10)), "1"),
        ("1,3,5-7", [1, 3, 5, 6, 7], "1"),
        ("0-20:2", list(range(0, 21, 2)), "2"),
        ("0-15:4", [0, 4, 8, 12], "4"),
        ("7", [7], "1"),
    ],
)
def test_every_array_form_queues_one_job_per_index(written, indices, step):
    sub = parsed(script(f"--array={written}", "-o o_%a_%4a.txt"))
    assert [int(j.environment["SLURM_ARRAY_TASK_ID"]) for j in sub.jobs] == indices
    assert [j.process for j in sub.jobs] == list(range(len(indices)))
    assert sub.jobs[-1].stdout == f"o_{indices[-1]}_{indices[-1]:04d}.txt"
    assert sub.jobs[0].environment["SLURM_ARRAY_TASK_STEP"] == step
    assert sub.jobs[0].environment["SLURM_ARRAY_TASK_MIN"] == str(indices[0])
    assert sub.jobs[0].environment["SLURM_ARRAY_TASK_MAX"] == str(indices[-1])


def test_a_huge_array_is_refused_before_it_is_expanded():
    (line,) = problems(script("--array=0-999999999"))
    assert line.startswith("job.sh:2: '0-999999999' makes more than 100,000 jobs")


def test_an_array_throttle_becomes_max_running():
    text = batch.translate(script("--array=0-9%2"), "job.sh", "slurm").text
    assert "max_running = 2\n" in text
    assert parsed(script("--array=0-9%2"), "job.sh").jobs[0].max_running == 2
    (line,) = problems(script("--array=0-9%x"))
    assert line == "job.sh:2: '%x' is not a limit; write it like --array=0-9%2"


@pytest.mark.parametrize(
    ("written", "dialect", "start"),
    [
        ("now+1hour", "slurm", "+1h"),
        ("now+90", "slurm", "+90s"),
        ("now+2days", "slurm", "+2d"),
        ("16:00", "slurm", "2026-12-02T16:00:00"),  # past today: tomorrow's
        ("22:30", "slurm", "2026-12-01T22:30:00"),
        ("2026-12-05T10:00", "slurm", "2026-12-05T10:00"),
        ("2200", "pbs", "2026-12-01T22:00:00"),
        ("2000", "pbs", "2026-12-02T20:00:00"),
        ("12051030", "pbs", "2026-12-05T10:30:00"),
        ("2612051030.15", "pbs", "2026-12-05T10:30:15"),
    ],
)
def test_begin_and_pbs_a_become_start_after(written, dialect, start):
    assert batch.begin_time(written, dialect, datetime(2026, 12, 1, 21, 0)) == start


def test_a_start_time_the_script_cannot_mean_is_refused_on_its_line():
    with pytest.raises(ValueError, match="'teatime' is not a start time read here"):
        batch.begin_time("teatime", "slurm")
    with pytest.raises(ValueError, match="'22' is not a PBS time"):
        batch.begin_time("22", "pbs")
    (line,) = problems(script("--begin=tomorrow"))
    assert line.startswith("job.sh:2: --begin=tomorrow: 'tomorrow' is not a start time read here")
    text = batch.translate(script("--begin=now+1hour"), "job.sh", "slurm").text
    assert "start_after = +1h\n" in text


def test_partition_and_constraint_become_labels_once_labels_exist(monkeypatch):
    monkeypatch.setitem(keys.KEYS, "labels", keys.Key("job"))
    text = batch.translate(script("-p gpu", "--constraint=ib&avx512"), "job.sh", "slurm").text
    assert "labels = gpu, ib, avx512\n" in text
    monkeypatch.setitem(keys.KEYS, "after_ok", keys.Key("job"))
    text = batch.translate(script("--dependency=afterok:12:14"), "job.sh", "slurm").text
    assert "after_ok = 12, 14\n" in text


def test_dependency_becomes_the_after_keys_on_the_scripts_line():
    submission = parsed(script("--dependency=afterok:12:14,afternotok:20"))
    kinds = {ref.kind: (ref.ids, ref.line) for ref in submission.dependencies}
    assert kinds == {"after_ok": ((12, 14), 2), "after_fail": ((20,), 2)}


def test_cpus_memory_and_gpus():
    job = parsed(script("-n 2", "--cpus-per-task=3", "--mem-per-cpu=1G", "--gres=gpu:1")).jobs[0]
    assert (job.request_cpus, job.request_memory_mb, job.request_gpus) == (6, 6 * 1024, 1)
    assert job.environment["SLURM_CPUS_PER_TASK"] == "3" and job.environment["SLURM_NTASKS"] == "2"
    assert job.environment["SLURM_MEM_PER_NODE"] == str(6 * 1024)
    assert parsed(script("-G 2")).jobs[0].request_gpus == 2
    assert parsed(script("--mem=500")).jobs[0].request_memory_mb == 500  # a bare number is MB
    assert "only GPUs are counted here" in problems(script("--gres=mic:1"))[0]
    assert "--mem and --mem-per-cpu both given" in problems(script("--mem=1G", "--mem-per-cpu=1G"))[0]


def test_output_patterns():
    job = parsed(script("-J fit", "-o %x-%j-%u.out", "-e err%%.txt")).jobs[0]
    assert job.stdout == f"fit-{MARK}-{batch.USER_MARKER}.out"
    assert job.stderr == "err%.txt"
    assert parsed(script("-o o-%J.out")).jobs[0].stdout == f"o-{MARK}.out"  # jobid.stepid: the batch step is the job
    assert parsed(script("-o o_%a.txt")).jobs[0].stdout == "o_4294967294.txt"  # %a outside an array, as sbatch
    assert "is not a pattern here" in problems(script("-o o_%q.txt"))[0]


def test_mail_types():
    def notification(kind: str) -> str:
        return parsed(script("--mail-user=a@b.org", f"--mail-type={kind}")).jobs[0].notification

    assert notification("END") == "complete"
    assert notification("ALL") == "complete"
    assert notification("FAIL") == "error"
    assert notification("NONE") == "never"
    sub = parsed(script("--mail-user=a@b.org", "--mail-type=BEGIN,END"))
    assert "not when it starts" in sub.notes[0][1]


def test_export_copies_the_submitters_environment_as_sbatch_does_without_the_servers_secrets():
    from dctoolkit.jobs.intake.parse import SubmitFacts

    env = {"LAB": "x", "SECRET_KEY": "s", "PATH": "/home/me/bin", "SLURM_JOB_ID": "99"}
    job = parse_submission(script(), "job.sh", facts=SubmitFacts(env=env)).jobs[0]
    assert job.environment["LAB"] == "x"
    assert "SECRET_KEY" not in job.environment and "PATH" not in job.environment
    assert job.environment["SLURM_JOB_ID"] == ""  # the submitter's own Slurm job is not this one
    job = parse_submission(script("--export=NONE"), "job.sh", facts=SubmitFacts(env=env)).jobs[0]
    assert "LAB" not in job.environment
    job = parse_submission(script("--export=LAB,MODE=fast"), "job.sh", facts=SubmitFacts(env=env)).jobs[0]
    assert (job.environment["LAB"], job.environment["MODE"]) == ("x", "fast")


def test_pbs_forms():
    text = "#!/bin/sh\n#PBS -N run\n#PBS -l nodes=1:ppn=3\n#PBS -l mem=1gb,walltime=00:10:00\n#PBS -J 1-5:2\necho\n"
    sub = parsed(text)
    assert [j.environment["PBS_ARRAY_INDEX"] for j in sub.jobs] == ["1", "3", "5"]
    job = sub.jobs[0]
    assert (job.name, job.request_cpus, job.request_memory_mb, job.max_runtime_seconds) == ("run", 3, 1024, 600)
    assert parsed("#!/bin/sh\n#PBS -l select=1:ncpus=2:ngpus=1\necho\n").jobs[0].request_gpus == 1
    assert parsed("#!/bin/sh\n#PBS -l mem=1048576\necho\n").jobs[0].request_memory_mb == 1  # bytes, as PBS


def test_unknown_options_are_all_reported_with_their_lines():
    lines = problems(script("--bogus", "-Z 3", "--cpus-per-task=many"))
    assert lines == [
        "job.sh:2: --bogus is not an sbatch option this version knows; remove the line",
        "job.sh:3: -Z is not an sbatch option this version knows; remove the line",
        "job.sh:4: 'many' is not a count; write a whole number such as 4",
    ]


def test_qos_is_accepted_with_a_note():
    sub = parsed(script("--qos=normal"))
    assert len(sub.jobs) == 1 and "accepted and not used" in sub.notes[0][1]


# --- the command line's --sbatch, and what the node fills in -----------------------------------


def test_sbatch_options_on_the_command_line_override_the_scripts():
    built = script_options(script("--array=0-1", "--mem=1G"), "--array=0-9 --mem=2G", '--sbatch "--array=0-9 --mem=2G"')
    sub = parsed(built.text)
    assert len(sub.jobs) == 10 and sub.jobs[0].request_memory_mb == 2048
    built = script_options(script(), "--mem=lots", "--sbatch --mem=lots")
    with pytest.raises(SubmissionError) as caught:
        parsed(built.text)
    assert built.explain(caught.value).startswith("--sbatch --mem=lots: 'lots' is not a size")


def test_the_node_fills_in_the_job_id_node_and_folder():
    env = parsed(script()).jobs[0].environment
    filled = fill_runtime(env, job_id=17, node="node-2", workdir="/work/job")
    assert (filled["SLURM_JOB_ID"], filled["SLURMD_NODENAME"], filled["SLURM_SUBMIT_DIR"]) == (
        "17",
        "node-2",
        "/work/job",
    )
    assert fill_runtime({"SLURM_JOB_ID": "mine"}, job_id=1, node="n", workdir="/w") == {"SLURM_JOB_ID": "mine"}


def test_a_bash_script_that_calls_srun_gets_the_srun_helper():
    sub = parsed("#!/bin/bash\n#SBATCH -n 2\nsrun ./app\n")
    job = sub.jobs[0]
    assert [i.name for i in job.inputs] == [batch.SRUN_HELPER]
    assert job.environment["BASH_ENV"] == ""  # the node points it at the helper in the job's folder
    assert fill_runtime(job.environment, job_id=1, node="n", workdir="/w")["BASH_ENV"] == f"/w/{batch.SRUN_HELPER}"
    assert not parsed("#!/bin/bash\necho done\n").jobs[0].inputs
    sub = parsed("#!/bin/sh\n#SBATCH -n 1\nsrun ./app\n")
    assert "bash scripts only" in sub.notes[0][1]


def test_an_output_outside_the_results_is_refused_in_sbatchs_words():
    (line,) = problems(script("--output=/home/me/logs/%j.out"))
    assert line.startswith("job.sh:2: --output=/home/me/logs/%j.out: the file comes back with the job's results")
    assert "is not an sbatch" not in line and "{" not in line
    assert parsed(script("-o logs/%x.out")).jobs[0].stdout == "logs/job.sh.out"


def test_account_and_pbs_a_become_the_accounting_group_and_exclude_becomes_avoid():
    (slurm,) = parsed(script("--account=bio", "-x n3,n4")).jobs
    assert (slurm.accounting_group, slurm.avoid) == ("bio", ("n3", "n4"))
    (short,) = parsed(script("-A chem")).jobs
    assert short.accounting_group == "chem"
    (pbs,) = parsed("#!/bin/sh\n#PBS -A bio\n#PBS -N p\necho hi\n", "job.pbs").jobs
    assert pbs.accounting_group == "bio"
    assert problems(script("--account=b/io")) == [
        "job.sh:2: accounting_group = b/io: a group name is letters, digits, '_', '.' and '-' (./dct group lists "
        "the groups)"
    ]
