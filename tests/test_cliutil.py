"""The one writable-folder check behind train's --workdir and predict/evaluate's --output."""

import os

import pytest

from modnet_jax.cliutil import folder_problem
from modnet_jax.inference.cli import UserError, check_output_dir
from modnet_jax.training.cli import UsageError, check_workdir


def test_folder_problem_cases(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert folder_problem(str(tmp_path / "new" / "deeper")) == (str(tmp_path / "new" / "deeper"),
                                                                None)
    assert folder_problem(str(afile)) == (str(afile), "exists and is not a folder")
    assert folder_problem(str(afile / "sub")) == (str(afile / "sub"),
                                                  f"{afile} is a file, not a folder")
    assert not (tmp_path / "new").exists()  # nothing created
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert folder_problem(str(locked / "x"))[1] == f"{locked} is not writable"


def test_both_commands_phrase_the_same_check(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(UserError, match=r"notes.txt: output folder: exists and is not a folder"):
        check_output_dir(str(afile))
    with pytest.raises(UsageError, match=r"--workdir .*notes.txt: exists and is not a folder"):
        check_workdir(str(afile))
    assert check_output_dir(str(tmp_path / "out")) == str(tmp_path / "out")
    assert check_workdir(str(tmp_path / "wd")) == str(tmp_path / "wd")
