"""Real-style HTCondor submit files (tests/data/condor/, each naming its source) parse with HTCondor's meaning:
the stdout file, the argv, how many jobs each queue statement makes and with which items."""

from pathlib import Path

import pytest

from dctoolkit.jobs.intake.parse import SubmissionError, SubmitFacts, parse_submission

CORPUS = Path(__file__).resolve().parent.parent / "data" / "condor"


def facts(
    names: tuple[tuple[str, bool], ...] = (),
    env: dict[str, str] | None = None,
    folders: dict[str, list[tuple[str, bool]]] | None = None,
) -> SubmitFacts:
    def read_text(path: str) -> str | None:
        file = CORPUS / path
        return file.read_text() if file.is_file() else None

    listing = folders or {}
    return SubmitFacts(read_text=read_text, names=lambda: names, env=env or {}, listdir=lambda p: listing.get(p))


def parse(name: str, cluster: int = 42, **kwargs) -> list:
    text = (CORPUS / name).read_text()
    return list(parse_submission(text, name, facts=facts(**kwargs), cluster=cluster).jobs)


def test_every_corpus_file_cites_its_source():
    for path in sorted(CORPUS.glob("*.sub")):
        head = path.read_text().splitlines()[:3]
        assert head[0].startswith("# Source:") and "https://" in head[1], path.name


def test_manual_example_1_feeds_stdin_and_names_stdout():
    (job,) = parse("manual_example1_simple.sub")
    assert (job.executable.name, job.stdin, job.stdout, job.stderr, job.log) == (
        "myexe",
        "inputfile",
        "outputfile",
        "",
        "myexe.log",
    )
    assert [i.source for i in job.inputs] == ["inputfile"]


def test_manual_example_3_runs_each_queue_in_its_own_initialdir():
    jobs = parse("manual_example3_initialdir.sub")
    assert [(j.process, j.initialdir) for j in jobs] == [(0, "run_1"), (1, "run_2")]
    assert [j.stdout for j in jobs] == ["run_1/loop.out", "run_2/loop.out"]
    assert [j.stderr for j in jobs] == ["run_1/loop.error", "run_2/loop.error"]
    assert [[i.source for i in j.inputs] for j in jobs] == [["run_1/test.data"], ["run_2/test.data"]]
    assert {j.stdin for j in jobs} == {"test.data"}
    assert {j.executable.source for j in jobs} == {"mathematica"}, "the executable stays beside the file"
    assert {j.request_memory_mb for j in jobs} == {1024}


def test_manual_example_4_queues_150_with_numbered_streams():
    jobs = parse("manual_example4_process.sub")
    assert len(jobs) == 150
    assert (jobs[0].stdout, jobs[0].stderr, jobs[0].stdin) == ("out.0", "err.0", "in.0")
    assert (jobs[149].stdout, jobs[149].stdin) == ("out.149", "in.149")
    assert {j.log for j in jobs} == {"foo.log"}
    assert {j.request_memory_mb for j in jobs} == {32}


def test_queue_matching_files_takes_the_matching_files_only_sorted():
    names = (("middle.dat", False), ("ending.dat", False), ("initial.dat", False), ("old.dat", True), ("a.txt", False))
    jobs = parse("manual_queue_matching.sub", names=names)
    assert [j.arguments for j in jobs] == [
        ("-infile", "ending.dat"),
        ("-infile", "initial.dat"),
        ("-infile", "middle.dat"),
    ]
    assert [[i.name for i in j.inputs] for j in jobs] == [["ending.dat"], ["initial.dat"], ["middle.dat"]]


def test_queue_in_binds_a_variable_that_is_also_a_key():
    jobs = parse("manual_queue_in.sub")
    assert [(j.stdin, j.stdout) for j in jobs] == [("A", "out.A"), ("B", "out.B"), ("C", "out.C")]


def test_queue_from_an_inline_list_gives_the_last_variable_the_rest_of_the_line():
    jobs = parse("manual_queue_from_inline.sub")
    assert [(j.stdin, j.arguments) for j in jobs] == [
        ("file1", ("-a", "-b", "26")),
        ("file2", ("-c", "-d", "92")),
    ]


def test_automatic_variables_of_queue_3_in_a_b():
    jobs = parse("manual_automatic_variables.sub", cluster=7)
    assert [j.arguments for j in jobs] == [
        ("A", "0", "0", "0"),
        ("A", "1", "0", "0"),
        ("A", "2", "0", "0"),
        ("B", "0", "1", "1"),
        ("B", "1", "1", "1"),
        ("B", "2", "1", "1"),
    ]
    assert [j.stdout for j in jobs] == [f"7.{p}.out" for p in range(6)]


def test_new_syntax_arguments_and_environment_as_the_manual_gives_them():
    (job,) = parse("manual_arguments_new_syntax.sub")
    assert job.arguments == ("one", '"two"', "spacey 'quoted' argument")
    assert job.environment == {"one": "1", "two": '"2"', "three": "spacey 'quoted' value"}


def test_old_syntax_arguments_and_environment_as_the_manual_gives_them():
    (job,) = parse("manual_arguments_old_syntax.sub")
    assert job.arguments == ("one", '"two"', "3")
    assert job.environment == {"one": "1", "two": "2", "three": "\"quotes have no 'special' meaning\""}


def test_chtc_hello_world_names_its_files_after_the_cluster():
    jobs = parse("chtc_hello_world.sub", cluster=1234)
    assert [j.arguments for j in jobs] == [("0",), ("1",), ("2",)]
    assert [j.stdout for j in jobs] == [f"hello-chtc_1234_{p}.out" for p in range(3)]
    assert {j.log for j in jobs} == {"hello-chtc_1234.log"}
    assert {(j.request_memory_mb, j.request_disk_mb) for j in jobs} == {(1024, 1024)}


def test_queue_from_a_list_file_one_job_per_line():
    jobs = parse("osg_queue_from_file.sub", cluster=5)
    assert [j.arguments for j in jobs] == [
        ("wi.input", "wi.output"),
        ("mn.input", "mn.output"),
        ("il.input", "il.output"),
    ]
    assert [[i.name for i in j.inputs] for j in jobs] == [["wi.input"], ["mn.input"], ["il.input"]]
    assert [j.stdout for j in jobs] == ["job.5.0.out", "job.5.1.out", "job.5.2.out"]
    assert {j.attributes["JobDurationCategory"] for j in jobs} == {'"Medium"'}


def test_container_universe_names_a_root_filesystem():
    (job,) = parse("osg_container_universe.sub")
    assert (job.container, job.executable.source, job.arguments) == ("debian", "/bin/cat", ("/etc/hosts",))
    assert (job.stdout, job.request_memory_mb) == ("out.0", 100)


def test_notification_attributes_and_batch_name():
    jobs = parse("notify_and_attributes.sub")
    assert [j.arguments for j in jobs] == [("-n", "0"), ("-n", "1")]
    assert {(j.email, j.notification, j.name) for j in jobs} == {("me@lab.org", "complete", "sweep")}
    assert jobs[0].attributes == {"AccountingNote": '"sweep-7"', "Department": '"physics"'}


def test_several_queue_statements_each_take_the_settings_above_them():
    jobs = parse("several_queue_statements.sub")
    assert [(j.process, j.arguments, j.stdout, j.request_memory_mb) for j in jobs] == [
        (0, ("--model", "small"), "small.0.out", 256),
        (1, ("--model", "small"), "small.1.out", 256),
        (2, ("--model", "large"), "large.2.out", 4096),
    ]


def test_a_file_with_several_problems_names_each_line_at_once():
    with pytest.raises(SubmissionError) as info:
        parse("refused_universe_and_keys.sub")
    assert str(info.value).splitlines() == [
        "refused_universe_and_keys.sub:5: universe = standard is not supported here; use universe = vanilla "
        "(the default), or universe = container",
        "refused_universe_and_keys.sub:6: 'x509userproxy' is refused: grid proxy credentials are not used here; "
        "remove the line",
        "refused_universe_and_keys.sub:7: 'docker_image' is refused: a Docker image would have to be pulled; use "
        "universe = container with container_image = NAME of a root filesystem a node offers (./dct nodes lists them)",
        "refused_universe_and_keys.sub:8: unknown key 'request_dsk' — did you mean 'request_disk'?",
    ]


def test_the_readme_example_parses_with_its_files():
    folder = CORPUS.parents[2] / "examples" / "condor"

    def read_text(path: str) -> str | None:
        return (folder / path).read_text() if (folder / path).is_file() else None

    facts = SubmitFacts(read_text=read_text)
    jobs = parse_submission((folder / "sweep.sub").read_text(), "sweep.sub", facts=facts, cluster=3).jobs
    assert [(j.arguments, j.stdin, j.stdout, j.stderr) for j in jobs] == [
        (("alpha", "two words", "0"), "alpha.in", "out.0", "err.3.0"),
        (("beta", "two words", "1"), "beta.in", "out.1", "err.3.1"),
    ]
    assert all((folder / ref.source).is_file() for job in jobs for ref in (job.executable, *job.inputs))


# --- real files from public repositories (each names its source and commit) ------------------------


def test_every_corpus_file_parses_or_is_refused_as_bench_corpus_counts():
    # `python -m bench.corpus` prints these numbers: keep them true when a file or a rule changes.
    from bench.corpus import meant_to_fail, measure

    results = measure()["condor"]
    real = [(path, lines) for path, lines in results if not meant_to_fail(path)]
    assert len(real) >= 39
    refused = {path.name for path, lines in real if lines}
    assert all(lines for path, lines in results if meant_to_fail(path))
    assert refused == REFUSED_REAL, sorted(refused)


# What the corpus's real files still cannot do here, each for a reason its refusal names.
REFUSED_REAL = {
    "chtc_recipes_alphafold.sub",  # container_image = file:///...sif: images are not fetched nor run
    "gsdc_geant4_run.sub",  # +SingularityImage = ...sif (its transfer_output_remaps is read)
    "osgconnect_fastqc.sub",  # container_image = software/fastqc.sif (its transfer_output_remaps is read)
    "osgconnect_many_fastqc.sub",
    "osgconnect_blast_split.sub",  # stash:// input
    "osgconnect_software_words.sub",  # http:// input
    "osgconnect_software_http_transfer.sub",  # https:// input
    "osgconnect_dagman_vars_append.sub",  # $(JOB) and $(secret) come from a DAG's VARS
}


@pytest.mark.parametrize(
    "name",
    [
        "osgconnect_quickstart_tutorial02.sub",
        "osgconnect_quickstart_tutorial03.sub",
        "osgconnect_template_input_and_transfer.sub",
        "osgconnect_tf_matmul_gpu.sub",
    ],
)
def test_osg_run_a_failed_job_again_idiom_keeps_its_expressions(name):
    (job,) = parse(name)
    assert job.policy["on_exit_hold"] == "(ExitBySignal == True) || (ExitCode != 0)"
    assert job.policy["periodic_release"].startswith("(NumJobStarts < 5) && ((CurrentTime - EnteredCurrentStatus) > 60")


def test_osg_quickstart_with_an_empty_arguments_line():
    (job,) = parse("osgconnect_quickstart_tutorial01.sub")
    assert (job.executable.name, job.arguments) == ("short.sh", ())
    assert (job.stdout, job.stderr, job.log) == ("short.output", "short.error", "short.log")
    assert (job.request_memory_mb, job.request_disk_mb) == (1, 1)


def test_osg_scaling_up_r_queues_100_numbered_by_process_and_cluster():
    for name in ("osgconnect_scalingup_r.sub", "osgconnect_scalingup_r_container.sub"):
        jobs = parse(name, cluster=7)
        assert len(jobs) == 100
        assert [j.arguments for j in (jobs[0], jobs[99])] == [("0",), ("99",)]
        assert (jobs[99].stdout, jobs[99].stderr, jobs[99].log) == (
            "output/mcpi.out.7.99",
            "logs/job.error.7.99",
            "logs/job.log.7.99",
        )
        # +SingularityImage (OSG's spelling) and container_image name the same root filesystem.
        assert {j.container for j in jobs} == {"/cvmfs/singularity.opensciencegrid.org/opensciencegrid/osgvo-r:3.5.0"}


def test_vina_multijob_queues_one_job_per_matching_folder_and_stages_its_files():
    names = (("run01", True), ("run02", True), ("data", True))
    folders = {"run01": [("ligand1.pdbqt", False), ("config.txt", False)], "run02": [("ligand2.pdbqt", False)]}
    jobs = parse("osgconnect_vina_multijob.sub", cluster=9, names=names, folders=folders)
    # `matching` without files/dirs takes both; `$(inputdir)/` stages each folder's files, not the folder.
    assert [j.stdout for j in jobs] == ["logs/job.9.0.out", "logs/job.9.1.out"]
    assert [[(i.source, i.name) for i in j.inputs] for j in jobs] == [
        [("run01/config.txt", "config.txt"), ("run01/ligand1.pdbqt", "ligand1.pdbqt"), ("vina", "vina")],
        [("run02/ligand2.pdbqt", "ligand2.pdbqt"), ("vina", "vina")],
    ]
    assert {j.output for j in jobs} == {("results",)}


def test_a_folder_input_with_a_slash_stages_its_files_and_without_one_is_refused_with_the_reason():
    folders = {"data": [("receptor.pdbqt", False), ("ligand.pdbqt", False)], "./distribution": [("a", False)]}
    (job,) = parse("osgconnect_vina_job.sub", folders=folders)
    assert [i.source for i in job.inputs] == ["data/ligand.pdbqt", "data/receptor.pdbqt", "vina"]
    with pytest.raises(SubmissionError) as info:
        parse("osgconnect_software_transfer.sub", folders=folders)
    assert str(info.value).startswith(
        "osgconnect_software_transfer.sub:10: './distribution' is a folder; HTCondor would copy it whole"
    )
    assert "write './distribution/' to stage the files it holds" in str(info.value)
    with pytest.raises(SubmissionError, match="'data/' holds the folder 'sub'; only the files directly"):
        parse("osgconnect_vina_job.sub", folders={"data": [("sub", True), ("x", False)]})
    with pytest.raises(SubmissionError, match="two files would be staged as 'vina' "):
        parse("osgconnect_vina_job.sub", folders={"data": [("vina", False)]})
    (job,) = parse("osgconnect_vina_job.sub")  # no such folder: the name as written, found or not at submit
    assert [i.source for i in job.inputs] == ["data", "vina"]


def test_htcondor_interactive_example_quoted_environment_priority_and_no_mail():
    (job,) = parse("htcondor_examples_interactive.sub")
    assert (job.executable.source, job.arguments, job.environment) == ("/bin/sleep", ("180",), {"TMOUT": "7200"})
    assert (job.priority, job.notification, job.request_memory_mb) == (1000, "never", 512)
    assert (job.stdout, job.stderr) == ("", "")  # no output/error lines: HTCondor keeps neither stream


def test_htcondor_gpu_example_asks_for_one_gpu():
    (job,) = parse("htcondor_examples_gpu_simple.sub")
    assert (job.request_gpus, job.request_cpus, job.request_memory_mb) == (1, 1, 2048)
    assert (job.stdout, job.stderr, job.log) == ("gpu.out", "gpu.err", "gpu.log")


def test_gsdc_substr_names_the_streams_after_each_matched_file():
    names = (("alice.txt", False), ("moby_dick.txt", False), ("notes.md", False))
    jobs = parse("gsdc_count_word.sub", names=names)
    assert [(j.arguments, j.stdout, j.stderr) for j in jobs] == [
        (("alice.txt",), "alice.out", "alice.err"),
        (("moby_dick.txt",), "moby_dick.out", "moby_dick.err"),
    ]
    assert [[i.name for i in j.inputs] for j in jobs] == [["alice.txt"], ["moby_dick.txt"]]
    assert {j.environment["LANG"] for j in jobs} == {"en_US.UTF-8"}
    assert {j.batch_name for j in jobs} == {""}  # JobBatchName is no command: condor_submit leaves it a macro


def test_gsdc_queue_in_with_substr_and_a_requirements_per_host():
    jobs = parse("gsdc_myinfo.sub")
    assert [(j.stdout, j.requirements) for j in jobs] == [
        ("myinfo_node2.out", '(Machine =?= "node2.g0.gsdc.org")'),
        ("myinfo_node3.out", '(Machine =?= "node3.g0.gsdc.org")'),
    ]


def test_niclabs_new_syntax_argument_with_spaces_and_the_executable_among_inputs():
    (job,) = parse("niclabs_simple_io.sub")
    assert job.arguments == ("output.txt", "hello world")
    assert job.inputs == ()  # echo_to_file is the executable: staged once
    assert (job.output, job.stdout, job.stderr, job.log) == (("output.txt",), "logs/out", "logs/err", "logs/log")
    assert job.requirements == 'Arch == "X86_64" && OpSys == "LINUX"'


def test_alphafold_macro_defined_after_its_use_is_expanded_at_queue_time():
    # fasta_file is set below `arguments = $(fasta_file) ...`, as HTCondor expands lazily; the file is
    # refused only for its .sif image.
    text = (
        (CORPUS / "chtc_recipes_alphafold.sub")
        .read_text()
        .replace("container_image = file:///staging/USER/alphafold-2.3.1.sif", "container_image = alphafold")
    )
    (job,) = parse_submission(text, "alphafold.sub", facts=facts(), cluster=11).jobs
    assert job.arguments == ("test.fasta", "2022-01-01")
    assert [i.name for i in job.inputs] == ["test.fasta"]
    assert (job.output, job.stdout, job.log) == (("outputs",), "logs/job_11_0.out", "logs/job_11.log")
    assert (job.request_gpus, job.gpu_memory_mb, job.attributes["GPUJobLength"]) == (1, 8001, '"long"')


def test_tensorflow_gpu_job_streams_named_by_cluster_and_process():
    (job,) = parse("osgconnect_tensorflow_gpu_job.sub", cluster=5)
    assert (job.stdout, job.stderr, job.log, job.arguments) == ("5.0.output", "5.0.error", "5.log", ())
    assert [i.name for i in job.inputs] == ["test.py"]
    assert job.container.endswith("tensorflow-gpu:2.3-cuda-10.1")


def test_real_refusals_name_their_line_and_reason():
    with pytest.raises(SubmissionError) as info:
        parse("refused_niclabs_docker_universe.sub")
    assert [line.split(": ", 1)[0] for line in str(info.value).splitlines()] == [
        "refused_niclabs_docker_universe.sub:12",
        "refused_niclabs_docker_universe.sub:16",
    ]
    with pytest.raises(SubmissionError) as info:
        parse("osgconnect_software_words.sub")
    assert str(info.value).startswith("osgconnect_software_words.sub:14: http://stash")
    assert "inputs are not downloaded here" in str(info.value)


_SIF = "an Apptainer/Singularity image file would need Apptainer on the node, which runs jobs in bubblewrap"


@pytest.mark.parametrize(
    ("name", "line", "key", "why"),
    [
        (
            "chtc_recipes_alphafold.sub",
            6,
            "container_image",
            "an image named by URL would have to be fetched, and nodes fetch nothing",
        ),
        ("osgconnect_fastqc.sub", 11, "container_image", _SIF),
        # HTCondor's attribute: the refusal names the key as the user wrote it, not the one it stands for.
        ("gsdc_geant4_run.sub", 13, "+SingularityImage", _SIF),
    ],
)
def test_an_image_file_or_url_is_refused_saying_why_and_how_to_offer_it_instead(name, line, key, why):
    with pytest.raises(SubmissionError) as info:
        parse(name)
    (message,) = [m for m in str(info.value).splitlines() if "container_image" in m]
    assert message.startswith(f"{name}:{line}: {key} = ")
    assert message.endswith(
        f"{why}; unpack the image once into a folder on the nodes (for a .sif: apptainer build --sandbox "
        "/containers/NAME IMAGE.sif), offer it with DCT_CONTAINERS=/containers/NAME, and write container_image = "
        "NAME (./dct nodes lists what nodes offer)"
    )


def test_an_image_attribute_refusal_names_the_spelling_and_line_of_the_key_that_set_the_image():
    base = "executable = run.sh\n{}\nqueue\n"
    cases = [
        ('MY.SingularityImage = "x.sif"', 2, "MY.SingularityImage = x.sif: an Apptainer"),
        ('+SingularityImage = "x.sif"\ncontainer_image = y.sif', 3, "container_image = y.sif: an Apptainer"),
        ('container_image = y.sif\n+SingularityImage = "x.sif"', 3, "+SingularityImage = x.sif: an Apptainer"),
        ('+SingularityImage = "root"\ncontainer = other', 2, "+SingularityImage and container both given"),
    ]
    for middle, line, start in cases:
        with pytest.raises(SubmissionError) as info:
            parse_submission(base.format(middle), "job.sub", facts=facts())
        assert str(info.value).startswith(f"job.sub:{line}: {start}"), middle


def test_the_geant4_remaps_number_each_jobs_outputs():
    text = (
        (CORPUS / "gsdc_geant4_run.sub")
        .read_text()
        .replace(
            '+SingularityImage = "/shared/container_images/geant4-runtime_latest.sif"', '+SingularityImage = "geant4"'
        )
    )
    jobs = list(parse_submission(text, "gsdc_geant4_run.sub", facts=facts()).jobs)
    assert jobs[1].output_remaps == {
        "EnergyDeposition_iodine.out": "EnergyDeposition_iodine_1.out",
        "brachytherapy.root": "brachytherapy_1.root",
        "primary.root": "primary_1.root",
    }
