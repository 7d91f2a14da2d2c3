"""`./dct status`: the words, the ids, who sees which job, and the fast read of the database."""

import sqlite3
from pathlib import Path

import pytest

from dctoolkit.accounts.identity import IdentityError, acting_user_name
from dctoolkit.commandline import JOB_TABLE, USER_TABLE, Account, SetupError, database_trouble, read_jobs
from dctoolkit.jobs.status import SNAKEMAKE_WORDS, JobRow, StatusError, parse_job_ids, status_word, status_words

ALICE, BOB, STAFF = Account(1, False), Account(2, False), Account(3, True)


def test_each_state_is_its_own_word():
    states = ("waiting", "queued", "held", "dispatched", "running", "suspended", "succeeded", "failed", "cancelled")
    for state in states:
        assert status_word(state) == state


@pytest.mark.parametrize(
    ("state", "word"),
    [("waiting", "running"), ("queued", "running"), ("held", "running"), ("dispatched", "running"),
     ("running", "running"), ("suspended", "running"), ("succeeded", "success"), ("failed", "failed"),
     ("cancelled", "failed")],
)  # fmt: skip
def test_snakemake_reads_running_success_or_failed(state, word):
    assert status_word(state, "snakemake") == word


def test_snakemake_words_cover_exactly_the_final_states():
    from dctoolkit.jobs.models import FINAL_STATES

    assert set(SNAKEMAKE_WORDS) == {s.value for s in FINAL_STATES}


def test_words_come_in_the_order_the_ids_were_given():
    rows = {7: JobRow(7, "running", 1), 5: JobRow(5, "queued", 1)}
    assert status_words([7, 5, 7], rows, ALICE) == ["running", "queued", "running"]


def test_another_users_job_is_unknown_like_a_missing_one_and_nothing_is_printed():
    rows = {7: JobRow(7, "running", 1), 8: JobRow(8, "queued", 2)}
    with pytest.raises(StatusError) as refused:
        status_words([7, 8, 9], rows, ALICE)
    assert str(refused.value) == "no jobs 8, 9 of yours; './dct jobs --all' lists your jobs"
    with pytest.raises(StatusError) as refused:
        status_words([7], rows, BOB)
    assert str(refused.value) == "no job 7 of yours; './dct jobs --all' lists your jobs"


def test_staff_see_every_job():
    rows = {7: JobRow(7, "running", 1), 8: JobRow(8, "failed", 2)}
    assert status_words([7, 8], rows, STAFF, "snakemake") == ["running", "failed"]


def test_a_user_without_an_account_has_no_jobs():
    with pytest.raises(StatusError, match=r"^no job 7 of yours"):
        status_words([7], {7: JobRow(7, "running", 1)}, None)


def test_ids_that_are_not_numbers_are_all_named():
    assert parse_job_ids(["3", "12"]) == [3, 12]
    with pytest.raises(StatusError) as refused:
        parse_job_ids(["3", "x", "-1", "9" * 30])
    assert str(refused.value) == (f"'x', '-1', '{'9' * 30}': not a job id; job ids are numbers, as './dct jobs' shows")


def test_only_an_operator_may_act_as_another_user(tmp_path):
    assert acting_user_name("carol", True, tmp_path) == "carol"
    with pytest.raises(IdentityError) as refused:
        acting_user_name("carol", False, tmp_path)
    assert str(refused.value).startswith(
        f"--user carol: acting as another user is for the server's operators, who can read its secret key "
        f"({tmp_path / 'secret_key'} or SECRET_KEY)"
    )


def test_the_tables_read_are_the_models_tables():
    from django.contrib.auth.models import User

    from dctoolkit.jobs.models import Job

    assert [User._meta.db_table, Job._meta.db_table] == [USER_TABLE, JOB_TABLE]


def small_database(path: Path) -> dict:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {USER_TABLE} (id INTEGER PRIMARY KEY, username TEXT, is_staff BOOL)")
    db.execute(f"CREATE TABLE {JOB_TABLE} (id INTEGER PRIMARY KEY, state TEXT, owner_id INTEGER)")
    db.executemany(f"INSERT INTO {USER_TABLE} VALUES (?, ?, ?)", [(1, "alice", 0), (3, "root", 1)])
    db.executemany(f"INSERT INTO {JOB_TABLE} VALUES (?, ?, ?)", [(10, "running", 1), (11, "failed", 3)])
    db.commit()
    db.close()
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": {"timeout": 5}}


def test_read_jobs_reads_the_account_and_the_rows_that_exist(tmp_path):
    database = small_database(tmp_path / "db.sqlite3")
    account, rows = read_jobs(database, "alice", [10, 11, 12])
    assert account == Account(1, False)
    assert rows == {10: JobRow(10, "running", 1), 11: JobRow(11, "failed", 3)}
    assert read_jobs(database, "nobody", [10]) == (None, {})
    ids = list(range(1, 1200))  # more ids than one statement takes
    assert set(read_jobs(database, "root", ids)[1]) == {10, 11}


def test_a_missing_database_is_a_message_and_no_new_file(tmp_path):
    missing = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "none.sqlite3")}
    with pytest.raises(SetupError, match=r"^the database is not reachable or not set up .*run './dct migrate'"):
        read_jobs(missing, "alice", [1])
    assert not (tmp_path / "none.sqlite3").exists()
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    with pytest.raises(SetupError, match="no such table"):
        read_jobs({"ENGINE": "django.db.backends.sqlite3", "NAME": str(empty)}, "alice", [1])


def test_a_statement_lost_by_a_pooler_names_the_setting_that_fixes_it():
    # What psycopg raises behind PgBouncer 1.18 in transaction mode with prepared statements on (seen in
    # tests/integration/test_pgbouncer.py with DCT_DB_PREPARE=1).
    said = database_trouble('prepared statement "_pg3_0" does not exist')
    assert said.startswith(
        'the database server has lost a statement this process prepared (prepared statement "_pg3_0"'
    )
    assert "set DCT_DB_PREPARE=0 for every dctoolkit process" in said
    assert "migrate" in database_trouble("connection refused")


@pytest.fixture
def local_settings(tmp_path, monkeypatch):
    """`dct status` reading a small database of its own, as an operator (it holds the secret key)."""
    from types import SimpleNamespace

    from dctoolkit import commandline

    settings = SimpleNamespace(
        SECRET_KEY="k", VAR_DIR=str(tmp_path), DCT_SERVER="", DCT_TOKEN="",
        DATABASES={"default": small_database(tmp_path / "db.sqlite3")},
    )  # fmt: skip
    monkeypatch.setattr(commandline, "load_settings", lambda: settings)
    return settings


def test_dct_status_prints_the_words_and_exits_0(local_settings, capsys):
    from dctoolkit.commandline import main

    with pytest.raises(SystemExit) as ended:
        main(["status", "10", "11", "--user", "root"], "dct")
    assert ended.value.code == 0
    assert capsys.readouterr() == ("running\nfailed\n", "")
    with pytest.raises(SystemExit) as ended:
        main(["status", "--as", "snakemake", "11", "--user", "root"], "dct")
    assert (ended.value.code, capsys.readouterr().out) == (0, "failed\n")


def test_dct_status_of_a_job_not_yours_exits_1_with_the_message_on_stderr(local_settings, capsys):
    from dctoolkit.commandline import status_main

    assert status_main(["10", "11", "--user", "alice"]) == 1
    assert capsys.readouterr() == ("", "CommandError: no job 11 of yours; './dct jobs --all' lists your jobs\n")


def test_dct_status_refuses_user_to_someone_without_the_secret_key(local_settings, capsys):
    from dctoolkit.commandline import status_main

    local_settings.SECRET_KEY = ""
    assert status_main(["10", "--user", "root"]) == 1
    assert capsys.readouterr().err.startswith("CommandError: --user root: acting as another user is for the server's")


def test_dct_status_usage_errors_are_argparse_s(local_settings, capsys):
    from dctoolkit.commandline import status_main

    for argv in ([], ["--as", "slurm", "1"]):
        with pytest.raises(SystemExit) as ended:
            status_main(argv, "dct status")
        assert ended.value.code == 2
        assert capsys.readouterr().err.startswith("usage: dct status")


@pytest.mark.django_db(transaction=True)
def test_the_django_command_answers_the_same(capsys):
    from django.contrib.auth.models import User
    from django.core.management import CommandError, call_command
    from django.utils import timezone

    from dctoolkit.jobs.models import Job, Submission

    owner = User.objects.create(username="dora")
    sub = Submission.objects.create(owner=owner, source_name="s.txt", text="executable = a.sh\n")
    job = Job.objects.create(submission=sub, owner=owner, name="a", executable="a.sh", submitted_at=timezone.now())
    call_command("status", str(job.id), "--as", "snakemake", "--user", "dora")
    assert capsys.readouterr().out == "running\n"
    with pytest.raises(CommandError, match=f"^no job {job.id} of yours"):
        call_command("status", str(job.id), "--user", "eve")


@pytest.mark.parametrize(
    "argv",
    [["5"], ["5", "6", "7"], ["--as", "snakemake", "5"], ["5", "--as=snakemake"], ["--user", "root", "5", "6"],
     ["--user=root", "--as", "state", "5"]],
)  # fmt: skip
def test_the_quick_reading_of_the_command_line_is_argparses(argv):
    from dctoolkit.commandline import quick_status_args, status_parser

    quick = quick_status_args(argv)
    full = status_parser().parse_args(argv)
    assert quick is not None and (quick.ids, quick.style, quick.user) == (full.ids, full.style, full.user)


@pytest.mark.parametrize(
    "argv", [[], ["-h"], ["--help", "5"], ["--as", "slurm", "5"], ["--as"], ["--us", "root", "5"], ["--", "5"]]
)
def test_anything_unusual_is_left_to_argparse(argv):
    from dctoolkit.commandline import quick_status_args

    assert quick_status_args(argv) is None
