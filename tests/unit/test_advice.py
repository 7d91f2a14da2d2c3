"""Requested versus used, and when a better request is suggested."""

from dctoolkit.jobs.intake.advice import Usage, compare, nice_size_mb, size_text


def usage(cpus=1, memory_mb=256, run=100.0, cpu=100.0, rss=100.0) -> Usage:
    return Usage(cpus, memory_mb, run, cpu, rss)


def test_a_big_gap_gets_a_smaller_request():
    advice = compare(usage(cpus=4, memory_mb=8192, run=100, cpu=110, rss=620))
    assert advice.comparison == "asked for 4 cpus and 8.0 GB, used 1.1 cpus and 620 MB peak"
    assert advice.suggestions == ("request_cpus = 2", "request_memory = 960MB")


def test_a_close_fit_gets_no_suggestion():
    advice = compare(usage(cpus=2, memory_mb=1024, run=100, cpu=180, rss=700))
    assert advice.comparison == "asked for 2 cpus and 1.0 GB, used 1.8 cpus and 700 MB peak"
    assert advice.suggestions == ()


def test_using_more_than_asked_suggests_more():
    advice = compare(usage(cpus=1, memory_mb=512, run=10, cpu=38, rss=500))
    assert advice.suggestions == ("request_cpus = 4", "request_memory = 768MB")


def test_the_default_memory_is_never_suggested_lower():
    assert compare(usage(memory_mb=256, rss=12)).suggestions == ()
    assert compare(usage(memory_mb=4096, rss=12)).suggestions == ("request_memory = 256MB",)


def test_a_job_that_never_ran_has_no_comparison():
    assert compare(Usage(1, 256, None, None, None)) is None


def test_a_very_short_run_gives_no_cpu_advice():
    assert compare(usage(cpus=8, run=0.2, cpu=0.1, rss=100)).suggestions == ()


def test_sizes_round_up_to_what_people_write():
    assert [nice_size_mb(x) for x in (1, 65, 900, 1025, 3000)] == [64, 128, 960, 1280, 3072]
    assert [size_text(x) for x in (768, 1024, 1536, 4096)] == ["768MB", "1GB", "1536MB", "4GB"]
