"""Issue 30: every `course` command writes only into a folder it owns and keeps the user's files."""

import json

import pytest

from course_lib.tools import cli, outdir, release


def _course(tmp_path, names=("00_setup", "01_pretrained_backbones")):
    root = tmp_path / "course"
    (root / "notebooks" / "source").mkdir(parents=True)
    (root / "notebooks" / "student").mkdir()
    for name in names:
        (root / "notebooks" / "source" / f"{name}.ipynb").write_text("{}")
    return root


@pytest.fixture
def fake_build(monkeypatch):
    """`student_text` without otter: the build itself is tested in test_release.py."""
    def text(source, workdir):
        return f'{{"built from": "{source.stem}", "tags": ["{release.GRADER_CELL_TAG}"]}}\n'
    monkeypatch.setattr(release, "student_text", text)


def test_student_refuses_a_folder_with_the_users_notebooks_and_changes_nothing(tmp_path, fake_build,
                                                                               monkeypatch, capsys):
    monkeypatch.chdir(_course(tmp_path))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "07_my_project.ipynb").write_text("my project")
    (mine / "00_setup.ipynb").write_text("my own 00")
    assert cli.main(["student", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "holds no output that `course student` wrote" in err and "Fix:" in err and "Received: --out" in err
    assert (mine / "07_my_project.ipynb").read_text() == "my project"
    assert (mine / "00_setup.ipynb").read_text() == "my own 00" and len(list(mine.iterdir())) == 2
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert cli.main(["student", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "x"


def test_student_rebuilds_its_own_folder_and_refuses_files_added_to_it(tmp_path, fake_build, monkeypatch, capsys):
    monkeypatch.chdir(_course(tmp_path))
    out = tmp_path / "out"
    assert cli.main(["student", "--out", str(out)]) == 0
    assert json.loads((out / outdir.MARKER).read_text())["command"] == "student"
    assert cli.main(["student", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("unchanged") == 2
    (out / "07_my_project.ipynb").write_text("mine")
    assert cli.main(["student", "--out", str(out)]) == 2
    assert "did not write: 07_my_project.ipynb" in capsys.readouterr().err
    assert (out / "07_my_project.ipynb").read_text() == "mine"


def test_student_in_the_default_folder_keeps_the_learners_notebooks(tmp_path, fake_build, monkeypatch, capsys):
    root = _course(tmp_path)
    monkeypatch.chdir(root)
    student = root / "notebooks" / "student"
    (student / "07_my_project.ipynb").write_text("my project")
    (student / "05_old.ipynb").write_text(f'["{release.GRADER_CELL_TAG}"]')  # one it built from a removed source
    assert cli.main(["student"]) == 0
    assert (student / "07_my_project.ipynb").read_text() == "my project"
    assert not (student / "05_old.ipynb").exists() and (student / "00_setup.ipynb").is_file()
    (student / "01_pretrained_backbones.ipynb").write_text("my own copy")
    assert cli.main(["student"]) == 2
    assert "01_pretrained_backbones.ipynb, which `course student` did not write" in capsys.readouterr().err
    assert (student / "01_pretrained_backbones.ipynb").read_text() == "my own copy"
