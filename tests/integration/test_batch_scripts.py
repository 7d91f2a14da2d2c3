"""A Slurm batch script runs as sbatch would run it: its `#SBATCH --array` makes one job per index, each
job sees the SLURM_* variables a script reads, and `--output=out_%a.txt` names each job's stdout."""

import json

import pytest

pytestmark = pytest.mark.integration

ARRAY_SCRIPT = """\
#!/bin/bash
#SBATCH --job-name=sweep
#SBATCH --array=0-2
#SBATCH --output=out_%a.txt
#SBATCH --cpus-per-task=1
#SBATCH --time=00:05:00
echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT"
echo "job $SLURM_JOB_ID array $SLURM_ARRAY_JOB_ID name $SLURM_JOB_NAME cpus $SLURM_CPUS_PER_TASK"
echo "node $SLURMD_NODENAME dir-is-here $([ "$SLURM_SUBMIT_DIR" = "$PWD" ] && echo yes)"
echo "$SLURM_ARRAY_TASK_ID" > "result_$SLURM_ARRAY_TASK_ID.txt"
echo "to stderr" >&2
srun --ntasks=2 sh -c 'echo "srun task $SLURM_PROCID"' | sort
"""


def test_a_slurm_array_script_runs_once_per_index_with_its_variables_and_output_names(cluster, tmp_path):
    jobs = cluster.submit(tmp_path, ARRAY_SCRIPT, name="sweep.sh")
    assert len(jobs) == 3, jobs
    for index, job in enumerate(jobs):
        done = cluster.wait_job(job["id"])
        assert done["state"] == "succeeded", done
        assert done["name"] == "sweep"
        cluster.cli("results", str(job["id"]), cwd=tmp_path)
        task = tmp_path / f"TASK{job['id']}"
        lines = (task / f"out_{index}.txt").read_text().splitlines()
        # sbatch: without --error, stderr goes into --output's file too.
        assert lines[0] == f"task {index} of 3", lines
        assert lines[1] == f"job {job['id']} array {job['submission']} name sweep cpus 1", lines
        assert lines[2] == f"node {done['node']} dir-is-here yes", lines
        assert "to stderr" in lines
        assert lines[3:5] == ["srun task 0", "srun task 1"], lines  # srun runs its command, once per task
        assert not (task / ".dct_srun.sh").exists(), "the srun helper is staged, not a result"
        assert (task / f"result_{index}.txt").read_text() == f"{index}\n"
        assert not (task / "stdout").exists()


def test_a_script_with_unsupported_options_is_refused_naming_every_line(cluster, tmp_path):
    script = "#!/bin/sh\n#SBATCH --nodes=4\n#SBATCH --frobnicate\n#SBATCH --chdir=me\necho hi\n"
    (tmp_path / "bad.sh").write_text(script)
    done = cluster.cli("submit", "bad.sh", cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert "bad.sh:2: --nodes=4" in done.stderr, done.stderr
    assert "bad.sh:3: --frobnicate is not an sbatch option" in done.stderr, done.stderr
    assert "bad.sh:4: --chdir=me: give the absolute path of a folder granted to you" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    listed = json.loads(cluster.cli("jobs", "--all", "--json", cwd=tmp_path).stdout)["jobs"]
    assert all(j["name"] != "bad.sh" for j in listed)


PBS_SCRIPT = """\
# no '#!' line: qsub runs it with /bin/sh
#PBS -N pbsjob
#PBS -J 1-2
#PBS -l select=1:ncpus=1:mem=100mb
echo "index $PBS_ARRAY_INDEX id $PBS_JOBID name $PBS_JOBNAME"
"""


def test_a_pbs_script_through_the_api_with_sbatch_style_overrides_remotely(cluster, tmp_path):
    """The remote command line uploads the script as the submission (the API's one path, as the portal's)."""
    from tests.integration.test_remote_cli import NO_DATABASE
    from tests.support.cluster import PYTHON, ROOT
    from tests.support.web import start_web

    server = start_web(cluster)
    token = cluster.cli("token", user="alice").stdout.strip()
    (tmp_path / "arr.pbs").write_text(PBS_SCRIPT)
    env = {**cluster.env, "DCT_SERVER": server, "DCT_TOKEN": token, "DATABASE_URL": NO_DATABASE}
    import subprocess

    done = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "submit", "arr.pbs", "--qsub", "-J 1-3", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)["jobs"]
    assert len(jobs) == 3, "the command line's -J overrides the script's"
    for index, job in enumerate(jobs, 1):
        finished = cluster.wait_job(job["id"])
        assert finished["state"] == "succeeded", finished
        cluster.cli("results", str(job["id"]), cwd=tmp_path)
        out = (tmp_path / f"TASK{job['id']}" / f"pbsjob.o{job['id']}").read_text()
        assert out == f"index {index} id {job['id']} name pbsjob\n"


def test_notes_go_to_stderr_and_submission_keys_are_refused_for_a_script(cluster, tmp_path):
    (tmp_path / "q.sh").write_text("#!/bin/sh\n#SBATCH --qos=normal\n#SBATCH -J noted\necho ok\n")
    done = cluster.cli("submit", "q.sh", "--parsable", cwd=tmp_path)
    assert done.stdout.strip().isdigit(), "stdout stays the answer"
    assert "q.sh:2: note: --qos=normal: accepted and not used" in done.stderr, done.stderr
    assert cluster.wait_job(int(done.stdout))["state"] == "succeeded"
    refused = cluster.cli("submit", "q.sh", "-a", "request_cpus=2", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and '--sbatch "--cpus-per-task=4"' in refused.stderr, refused.stderr
    refused = cluster.cli("submit", "q.sh", "--qsub", "-J 1-2", cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "is not a PBS script; use --sbatch" in refused.stderr, refused.stderr
