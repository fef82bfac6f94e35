"""course_lib.tools.release: setup-cell normalisation, source guards, solution and secret lines, `course student`.

The builds of the real notebooks (byte-stable, up to date, no leaks, the round trip) are in
tests/test_notebook_format.py.
"""

import nbformat
import pytest

from course_lib.tools import cli, release

v4 = nbformat.v4


# ------------------------------------------------------------------ setup cell

def test_normalise_setup_replaces_an_old_install_block():
    old = ('import sys\nif "google.colab" in sys.modules:  # Colab only\n'
           '    %pip install -q "course-lib @ git+https://example.org/x"\n'
           'import course_lib as cl\ncfg = cl.setup("03_x")')
    new = release.normalise_setup(old)
    assert new == release.colab_install_block() + 'import course_lib as cl\ncfg = cl.setup("03_x")'
    assert release.normalise_setup(new) == new


def test_normalise_setup_refuses_a_cell_without_the_block():
    with pytest.raises(ValueError, match="no `if \"google.colab\" in sys.modules:`"):
        release.normalise_setup('import course_lib as cl\ncfg = cl.setup("03_x")')


def test_colab_block_pins_the_packages_it_must_not_touch():
    block = release.colab_install_block()
    assert "tensorflow|keras|numpy" in block and f"-c {release.PINS_FILE}" in block
    assert "--upgrade" not in block and " -U " not in block
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(block)
    compile(code, "<setup>", "exec")
    assert "get_ipython().system(" in code and "run_line_magic('pip'" in code


# ------------------------------------------------------------------ source guards

def _source(cells, name="99_tiny"):
    nb = v4.new_notebook(cells=[v4.new_raw_cell(f"# ASSIGNMENT CONFIG\nname: {name}"), *cells])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _test_cell(body, hidden=False, message='"x should be 49"'):
    config = ("hidden: true\n" if hidden else "") + f"failure_message: {message}\n"
    return v4.new_code_cell(f'""" # BEGIN TEST CONFIG\n{config}""" # END TEST CONFIG\n{body}')


def _question(answer, wrapped=True, tests=None):
    tests = tests or [_test_cell("assert x == 49"), _test_cell("assert isinstance(x, int)", hidden=True)]
    body = [v4.new_raw_cell("# BEGIN SOLUTION"), v4.new_code_cell(answer), v4.new_raw_cell("# END SOLUTION")] \
        if wrapped else [v4.new_code_cell(answer)]
    return [v4.new_raw_cell("# BEGIN QUESTION\nname: q1\npoints: 2"), v4.new_markdown_cell("Set x."), *body,
            v4.new_raw_cell("# BEGIN TESTS"), *tests, v4.new_raw_cell("# END TESTS"),
            v4.new_raw_cell("# END QUESTION")]


def test_a_good_source_has_no_problems():
    assert release.source_problems(_source(_question("x = 49  # SOLUTION")), "99_tiny") == []


@pytest.mark.parametrize("cells, expected", [
    (_question("x = 49"), "has no `# SOLUTION`"),
    (_question("x = 49  # SOLUTION", wrapped=False), "outside a raw `# BEGIN SOLUTION` block"),
    (_question("x = 49  # SOLUTION", tests=[_test_cell("assert x == 49", hidden=True)]), "no public test"),
    (_question("x = 49  # SOLUTION", tests=[_test_cell("assert x", message="x: 49")]), "not valid YAML"),
])
def test_source_problems_name_what_would_leak_or_break(cells, expected):
    problems = release.source_problems(_source(cells), "99_tiny")
    assert any(expected in p for p in problems), problems


def test_source_problems_checks_the_config_name():
    assert "must be the file name" in release.source_problems(_source([]), "98_other")[0]


def test_solution_lines_and_solved_source():
    cell = "def f(n):\n    # BEGIN SOLUTION\n    y = n * 2\n    return y\n    # END SOLUTION\nz = f(3)  # SOLUTION"
    assert release.solution_lines(cell) == ["y = n * 2", "return y", "z = f(3)"]
    assert release.solved_source(cell) == "def f(n):\n    y = n * 2\n    return y\nz = f(3)"


def test_secrets_skip_text_that_is_public_anyway():
    nb = _source(_question("x = 49  # SOLUTION", tests=[
        _test_cell("assert x == 49"), _test_cell("assert x == 49\nassert x > 48", hidden=True)]))
    assert release.secrets(nb) == ["assert x > 48", "x = 49"]


# ------------------------------------------------------------------ command line

def test_cli_has_the_student_command():
    with pytest.raises(SystemExit) as exc:
        cli.main(["student", "--help"])
    assert exc.value.code == 0


def test_cli_student_check_passes_on_the_committed_notebooks(capsys, monkeypatch, student_build):
    import shutil

    def copy_of_the_session_build(out=None, root=None, only=None):  # the build itself is tested elsewhere
        shutil.copytree(student_build, out, dirs_exist_ok=True)

    monkeypatch.setattr(release, "build_student", copy_of_the_session_build)
    assert cli.main(["student", "--check"]) == 0, capsys.readouterr().out
