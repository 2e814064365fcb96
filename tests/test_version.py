"""The one code version (`xclip_hf.version`): reports record {version, commit}, job records the version alone, and
nothing fails without git."""

from __future__ import annotations

import os
import shutil

import xclip_hf
from xclip_hf import version


def test_reports_and_job_records_share_the_version():
    from xclip_hf.evaluation.report import build_report

    report = build_report("closed-set", {}, {"fingerprint": "sha256:" + "0" * 64}, {"summary": {}}, [])
    assert report["code_version"]["xclip_hf"] == version.package_version() == xclip_hf.__version__
    assert set(report["code_version"]) == {"xclip_hf", "git"}


def test_commit_only_in_a_checkout_and_never_an_error_without_git(monkeypatch, tmp_path):
    if version.checkout_root() is None:
        assert version.git_commit() is None  # outside a checkout git is not asked
    elif shutil.which("git"):
        assert version.git_commit()  # a source checkout: the commit, e.g. "5390a12" or "5390a12+dirty"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the PATH
    assert version.git_commit() is None
    assert version.code_version() == {"xclip_hf": xclip_hf.__version__, "git": None}


def test_an_editable_install_of_another_checkout_is_not_this_copy(monkeypatch):
    """Metadata of a distribution that did not install this copy (another checkout's editable install) is ignored."""
    import importlib.metadata

    class Other:
        version = "9.9.9"

        def locate_file(self, path):
            return os.path.join(os.sep, "elsewhere", path)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Other())
    assert version.package_version() == xclip_hf.__version__

    class This(Other):
        def locate_file(self, path):
            return os.path.join(os.path.dirname(os.path.dirname(version.__file__)), path)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: This())
    assert version.package_version() == "9.9.9"
