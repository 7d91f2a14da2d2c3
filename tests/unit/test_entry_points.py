"""`pip install -e .` makes `dct`, `dct-submit`, `dct-status` and `dct-cancel`: each names a function that
runs the command it is named after."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dctoolkit import commandline

ROOT = Path(__file__).resolve().parents[2]


def test_the_scripts_name_functions_that_exist():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"dct", "dct-submit", "dct-status", "dct-cancel"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.parametrize(
    ("function", "command"),
    [(commandline.dct_submit, "submit"), (commandline.dct_status, "status"), (commandline.dct_cancel, "cancel")],
)
def test_each_one_word_command_is_dct_with_its_command_first(function, command, monkeypatch):
    seen = []
    monkeypatch.setattr(commandline, "main", lambda argv, prog: seen.append((argv, prog)))
    monkeypatch.setattr("sys.argv", ["/usr/bin/dct-x", "12", "--json"])
    function()
    assert seen == [([command, "12", "--json"], "dct")]


def test_light_commands_import_the_rest_framework_without_its_extras_and_leave_them_importable():
    # In a fresh interpreter: the test process has imported the framework (and its extras) already.
    code = (
        "import os, sys\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'dctoolkit.settings'\n"
        "from dctoolkit import commandline\n"
        "commandline._import_rest_framework_lean()\n"
        "from rest_framework import compat\n"
        "print([getattr(compat, n) for n in ('postgres_fields', 'requests', 'markdown', 'pygments', 'yaml')])\n"
        "print(sorted(set(commandline.REST_FRAMEWORK_EXTRAS) & set(sys.modules)))\n"
        "import requests, pygments\n"
        "print(requests.__name__, pygments.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[None, None, None, None, None]", "[]", "requests pygments"], done.stdout
