"""The version: written once (``rfcn_tf/_version.py``), read by setup.cfg, the installed
metadata, ``rfcn_tf.__version__`` and ``rfcn-tf --version``."""

import configparser
import importlib
import importlib.metadata
import os
import re

import pytest

import rfcn_tf
from rfcn_tf import cli
from rfcn_tf.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_cfg_version():
    """setup.cfg's ``[metadata] version``: a literal, or ``attr: module.name`` resolved by import
    (what setuptools does when it builds the package)."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    value = parser["metadata"]["version"].strip()
    if not value.startswith("attr:"):
        return value
    module, _, name = value[len("attr:") :].strip().rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_dunder_version_is_setup_cfg_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", rfcn_tf.__version__), rfcn_tf.__version__
    assert rfcn_tf.__version__ == setup_cfg_version()


def test_installed_metadata_matches_the_source():
    """Fails on a stale install (version bumped, package not reinstalled)."""
    assert importlib.metadata.version("rfcn_tf") == rfcn_tf.__version__


def test_version_flag_prints_name_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"rfcn-tf {importlib.metadata.version('rfcn_tf')}\n"


def test_version_flag_without_installed_metadata_uses_dunder_version(monkeypatch, capsys):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(cli, "__version__", "9.8.7")  # tells the fallback apart from the metadata
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "rfcn-tf 9.8.7\n"
