"""The Colab install line of every setup cell leaves Colab's TensorFlow, Keras and NumPy alone.

What this checks, and how (no network, no Colab, about a minute):

- A throwaway venv stands in for the Colab runtime. It sees this project's installed packages
  through a `.pth` file, and gets *fake* `tensorflow` and `keras` distributions (metadata only,
  odd versions 2.17.99 and 3.4.99) that stand for "Colab's own". NumPy is the real one.
- The setup cell's Colab block, taken from the built student notebook, runs in a real IPython
  shell inside that venv with `google.colab` present, so IPython itself expands `!` and `%pip`.
  Two substitutions only: the GitHub requirement points at a local stand-in wheel of the course
  whose dependencies are copied from pyproject.toml, and pip runs offline
  (`PIP_NO_INDEX`, `PIP_FIND_LINKS`) against a folder that also offers newer fake TensorFlow,
  Keras and NumPy (2.99.0, 3.99.0, and NumPy's installed minor version .999), so pip *could* replace them if it wanted to.

It checks pip's resolution (what gets installed or replaced), not that the course then runs
on Colab's real TensorFlow.
"""

import importlib.metadata
import json
import pathlib
import subprocess
import sys
import sysconfig
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import zipfile

import nbformat
import pytest

from course_lib.tools import notebooks, release

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
COLAB_VERSIONS = {"tensorflow": "2.17.99", "keras": "3.4.99"}
# Newer versions pip could pick. NumPy's stays in the installed minor series: SciPy and others
# here cap NumPy's minor version, and the control below needs a version pip is allowed to take.
_NUMPY = importlib.metadata.version("numpy").split(".")
NEWER = {"tensorflow": "2.99.0", "keras": "3.99.0", "numpy": f"{_NUMPY[0]}.{_NUMPY[1]}.999"}

DRIVER = """
import sys, types
from IPython.core.interactiveshell import InteractiveShell
sys.modules["google.colab"] = types.ModuleType("google.colab")
result = InteractiveShell.instance().run_cell(open(sys.argv[1]).read())
sys.exit(0 if result.success else 3)
"""


def wheel(folder: pathlib.Path, name: str, version: str, requires=()) -> pathlib.Path:
    """Write a metadata-only wheel (no code) named `name`."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
             + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in files.items():
            zf.writestr(arcname, text)
        zf.writestr(f"{dist}.dist-info/RECORD", "".join(f"{a},,\n" for a in [*files, f"{dist}.dist-info/RECORD"]))
    return path


def colab_block() -> str:
    """The Colab lines of the shipped 00_setup student notebook's setup cell."""
    nb = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
    source = nb.cells[release.setup_cell_index(nb)].source
    return source[:source.index("import course_lib")]


class FakeColab:
    """A venv that sees this project's packages plus fake 'Colab' TensorFlow and Keras."""

    def __init__(self, tmp: pathlib.Path, course_requires=()):
        self.tmp, self.wheels = tmp, tmp / "wheels"
        self.wheels.mkdir()
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
        self.python = str(tmp / "venv" / "bin" / "python")
        self.site = pathlib.Path(self._run(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
        (self.site / "_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        for name, version in NEWER.items():
            wheel(self.wheels, name, version)
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        self.course_wheel = wheel(self.wheels, "course-lib", "0.1.0", [*deps, *course_requires])
        colab = tmp / "colab"
        colab.mkdir()
        fakes = [str(wheel(colab, n, v)) for n, v in COLAB_VERSIONS.items()]
        self._run(["-m", "pip", "install", "-q", "--no-deps", *fakes])

    def _run(self, args, check=True) -> str:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp), "PIP_NO_INDEX": "1",
               "PIP_FIND_LINKS": str(self.wheels), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_ROOT_USER_ACTION": "ignore", "PIP_CONFIG_FILE": "/dev/null"}
        proc = subprocess.run([self.python, *args], capture_output=True, text=True, env=env, timeout=300)
        if check and proc.returncode:
            raise AssertionError(f"{args} failed:\n{proc.stdout}\n{proc.stderr}")
        self.last_output = proc.stdout + proc.stderr
        return proc.stdout

    def run_cell(self, block: str) -> None:
        """Run Colab lines in IPython; the course requirement points at the local stand-in wheel."""
        assert release.install_spec() in block and release.PINS_FILE in block
        text = block.replace(release.install_spec(), f"course-lib @ {self.course_wheel.as_uri()}")
        text = text.replace(release.PINS_FILE, str(self.tmp / "pins.txt"))
        (self.tmp / "cell.py").write_text(text)
        (self.tmp / "driver.py").write_text(DRIVER)
        self._run([str(self.tmp / "driver.py"), str(self.tmp / "cell.py")])
        self.cell_output = self.last_output

    def installed(self) -> dict:
        """{name: (version, folder it is installed in)} for the packages that matter."""
        code = ("import json, importlib.metadata as m\n"
                "print(json.dumps({n: [m.version(n), str(m.distribution(n)._path.parent)] "
                "for n in ('tensorflow', 'keras', 'numpy', 'course-lib')}))")
        return {k: tuple(v) for k, v in json.loads(self._run(["-c", code])).items()}

    def course_installed_here(self) -> bool:
        """True when course-lib was installed into this venv by the direct (URL) requirement."""
        return any(self.site.glob("course_lib-*.dist-info/direct_url.json"))


@pytest.mark.slow
def test_colab_install_adds_the_course_and_keeps_tensorflow_keras_numpy(tmp_path):
    colab = FakeColab(tmp_path)
    before = colab.installed()
    assert before["tensorflow"] == ("2.17.99", str(colab.site))
    colab.run_cell(colab_block())
    pins = (tmp_path / "pins.txt").read_text().split()
    assert sorted(pins) == sorted(f"{n}=={before[n][0]}" for n in release.PINNED), pins
    assert colab.course_installed_here(), colab.cell_output
    after = colab.installed()
    for name in release.PINNED:
        assert after[name] == before[name], f"{name} changed: {before[name]} -> {after[name]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", release.PINNED)
def test_pins_stop_a_requirement_that_would_replace_colab_packages(tmp_path, name):
    """If the course (or a dependency) ever wanted another TF/Keras/NumPy, pip stops instead."""
    colab = FakeColab(tmp_path, course_requires=[f"{name}>={NEWER[name]}"])
    before = colab.installed()[name]
    colab.run_cell(colab_block())
    assert colab.installed()[name] == before
    assert not colab.course_installed_here()
    assert "ResolutionImpossible" in colab.cell_output, colab.cell_output
    # Control: the same line without the pins does replace it, so the pins are what protect it.
    colab.run_cell(colab_block().replace(f"-c {release.PINS_FILE} ", ""))
    assert colab.installed()[name][0] == NEWER[name]
    assert colab.course_installed_here()


def test_every_student_setup_cell_uses_the_same_colab_install():
    students = sorted((ROOT / "notebooks" / "student").glob("*.ipynb"))
    assert students, "no student notebooks: run `course student`"
    for path in students:
        nb = nbformat.read(path, as_version=4)
        source = nb.cells[release.setup_cell_index(nb)].source
        assert source.startswith(release.colab_install_block()), f"{path.name}: setup cell is\n{source}"
