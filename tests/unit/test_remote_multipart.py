"""The remote client's multipart body: Django's own parser reads back every part, files streamed from disk."""

import io

from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http.multipartparser import MultiPartParser

from dctoolkit.client.remote import multipart, submission_parts


def test_django_parses_the_body_back_into_its_fields_and_files(tmp_path, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 10
    (tmp_path / "data.csv").write_bytes(b"a,b\r\n\x00\xff" * 1000)
    chunks, length, content_type = multipart(
        [("submission", "job.txt", b"executable = x.sh\n"), ("files", 'we"ird.csv', tmp_path / "data.csv")]
    )
    body = b"".join(chunks)
    assert len(body) == length
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(length)}
    _, files = MultiPartParser(meta, io.BytesIO(body), [MemoryFileUploadHandler()]).parse()
    assert files["submission"].name == "job.txt" and files["submission"].read() == b"executable = x.sh\n"
    (data,) = files.getlist("files")
    assert data.read() == (tmp_path / "data.csv").read_bytes()


def test_a_text_part_is_a_plain_field_beside_the_files(tmp_path, settings):
    (tmp_path / "a").write_bytes(b"1\n")
    chunks, length, content_type = multipart(
        [("files", "a.txt", tmp_path / "a"), ("paths", None, b"data/a.txt"), ("paths", None, "é/b.txt".encode())]
    )
    body = b"".join(chunks)
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(length)}
    post, files = MultiPartParser(meta, io.BytesIO(body), [MemoryFileUploadHandler()]).parse()
    assert post.getlist("paths") == ["data/a.txt", "é/b.txt"]
    assert [f.name for f in files.getlist("files")] == ["a.txt"]


def test_a_folder_that_holds_no_file_is_sent_as_a_dirs_field(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    parts = submission_parts("executable = run.sh\n", "job.sub", {"run.sh": tmp_path / "run.sh"}, ["empty"])
    chunks, length, content_type = multipart(parts)
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(length)}
    post, files = MultiPartParser(meta, io.BytesIO(b"".join(chunks)), [MemoryFileUploadHandler()]).parse()
    assert (post.getlist("dirs"), post.getlist("paths")) == (["empty"], [])
    assert [f.name for f in files.getlist("files")] == ["run.sh"]
