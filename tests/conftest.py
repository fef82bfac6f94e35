"""Shared fixtures and helpers: the mirror (skips when none is configured, fails in CI), the graded notebooks nbval runs, tiny image folders and images."""

import os
import pathlib

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # every test draws off screen (not MPLBACKEND: executed notebooks inherit it)

NEEDS_MIRROR = "needs COURSE_MIRROR (the README's offline route)"  # conftest.py's summary counts these skips


@pytest.fixture
def mirror_root():
    """The configured offline mirror, or skip (fail in CI: `CI` set; the summary counts these skips)."""
    value = os.environ.get("COURSE_MIRROR")
    if not value or not pathlib.Path(value).is_dir():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(NEEDS_MIRROR)
    return pathlib.Path(value)


def pytest_collect_file(file_path, parent):
    """Beside tests/test_student_notebooks.py, every student notebook's graded copy, collected by nbval."""
    opt = parent.config.option
    if file_path.name == "test_student_notebooks.py" and (opt.nbval or opt.nbval_lax):
        return GradedNotebooks.from_parent(parent, path=file_path, name="graded student notebooks",
                                           nodeid="tests/test_student_notebooks.py::graded")


class GradedNotebooks(pytest.File):
    """The graded student copies (tests/graded_notebooks.py), written at collection to build/nbval/
    (COURSE_NBVAL_DIR overrides it), each an nbval notebook whose code cells are test items."""

    def collect(self):
        import uuid

        from nbval.plugin import IPyNbFile

        from tests.graded_notebooks import write_graded_copies

        out = pathlib.Path(os.environ.get("COURSE_NBVAL_DIR") or self.config.rootpath / "build" / "nbval")
        run_id = getattr(self.config, "workerinput", {}).get("testrunuid") or uuid.uuid4().hex
        for path in write_graded_copies(self.config.rootpath, out, run_id):
            yield IPyNbFile.from_parent(self, path=path)


# Tests that execute a whole notebook, longest first (README's course map has each one's minutes).
LONG_FIRST = ("03_fine_tuning", "03b_fine_tuning_explorations", "05_negative_transfer", "04_domain_mismatch", "06_capstone",
              "07_export", "02_feature_extraction", "01_pretrained_backbones", "00_setup")
# Test files that take longest (whole, on one worker), longest first: 1.6, 1.1, 0.7, 0.5, 0.5, 0.4, 0.4,
# 0.3 min of worker time in a fresh-clone .ci/run (2026-12-02); every other file takes less.
LONG_FILES = ("test_grading.py", "test_reproducibility.py", "test_comparison.py", "test_scale.py",
              "test_colab_install.py", "test_recipe.py", "test_finetune.py", "test_features.py")


# Test files that read a session fixture another file reads too, and run in its group (one worker), right after it
SAME_WORKER = {"test_hostile_submissions.py": "test_grading.py"}  # both read `batch_00`, graded once


def _file(item) -> str:
    """The name of the file a test item comes from (for a file of SAME_WORKER, the file it goes with)."""
    name = pathlib.Path(str(item.fspath)).name
    return SAME_WORKER.get(name, name)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items):
    """Order and group tests for two workers (`--dist loadgroup`).

    A notebook's nbval cells are one unit (conftest.py groups them and marks them `slow`) and the
    longest notebooks start first, each followed by its full-profile smoke test; every other
    test file stays whole on one worker (its module fixtures are built once), with the file
    SAME_WORKER names (their session fixture is built once), the longest files first (a test marked
    with a group of its own keeps it), so that the last units to start are short ones. pytest-xdist keeps this order only with
    `--no-loadscope-reorder` (pyproject.toml): by default it starts the units with the most tests
    first, which put the notebooks, 03's 10 minutes among them, at the end.
    """
    def weight(item):
        name = next((n for n in LONG_FIRST if n in item.nodeid), None)
        if "::Cell " in item.nodeid and name:  # a graded student notebook's nbval cell (grouped by conftest.py)
            return LONG_FIRST.index(name)
        if "test_full_profile_smoke.py::test_full_profile_runs" in item.nodeid and name:
            return LONG_FIRST.index(name) + 0.5  # right after the same notebook's nbval cells
        if "test_notebooks_on_your_folder.py" in item.nodeid:  # one notebook each, spread over the workers
            return len(LONG_FIRST)
        file = _file(item)
        return len(LONG_FIRST) + 1 + (LONG_FILES.index(file) if file in LONG_FILES else len(LONG_FILES))

    for item in items:  # a test marked with its own group (to run beside its file's long fixture) keeps it
        if (weight(item) > len(LONG_FIRST) and "::Cell " not in item.nodeid
                and not item.get_closest_marker("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(_file(item)))
    items.sort(key=weight)  # stable: the order inside each group is kept


def pytest_collection_finish(session):
    """Stop when the groups above are ignored (pytest 9.2 with pytest-xdist 3.8): the suite would
    build each module fixture on both workers and run well past its time budget."""
    if getattr(session.config.option, "loadgroup", False):
        lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
        if lost:
            raise pytest.UsageError(
                f"pytest-xdist ignored the test groups ({len(lost)} tests, e.g. {lost[0]}): this pytest "
                f"({pytest.__version__}) does not keep the ids xdist sets. Fix: pip install 'pytest<9.2' "
                "(pyproject.toml's test extra pins it).")


@pytest.fixture(scope="session")
def student_build(tmp_path_factory):
    """One `course student` build per test session, shared by every test that needs one: its folder."""
    from course_lib.tools import notebooks, release

    out = tmp_path_factory.mktemp("student")
    release.build_student(out, notebooks.repo_root(pathlib.Path(__file__).parent))
    return out


@pytest.fixture(scope="session")
def autograder_00(tmp_path_factory):
    """The 00_setup autograder zip's folder, built once per test session."""
    from course_lib.tools import grading, notebooks

    folder = tmp_path_factory.mktemp("autograder")
    grading.build_autograder(folder, notebooks.repo_root(pathlib.Path(__file__).parent), only=["00_setup"])
    return folder


@pytest.fixture(scope="session")
def batch_00(tmp_path_factory, request):
    """The 00_setup batch (tests/batch_00.py), graded once per test session for real (`batch_00.grade`)."""
    from tests import batch_00

    batch_00.needs_sandbox()  # before the autograder is built
    return batch_00.grade(tmp_path_factory.mktemp("grading"), request.getfixturevalue("autograder_00"))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private COURSE_CACHE for one test."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_image(path, size=(20, 20), mode="RGB", seed=0, fmt=None):
    """Write a small random image file."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": None}[mode]
    shape = size + ((channels,) if channels else ())
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path, format=fmt)
    return path


def blocky_images(n=4, size=32, seed=0, block=8):
    """uint8 RGB images (n, size, size, 3) of random flat blocks (for the domain and adaptation tests)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 215, (n, size // block, size // block, 3))
    return blocks.repeat(block, 1).repeat(block, 2).astype(np.uint8)


def bn_model():
    """A tiny frozen Keras model with two BatchNormalization layers."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="dense")(x))
    model.trainable = False
    return model


@pytest.fixture
def image_folder(tmp_path, isolated_cache):
    """A user folder: 2 classes x 6 images, one grayscale, one RGBA, one corrupt, one text file."""
    root = tmp_path / "my_images"
    for c, cls in enumerate(["cats", "dogs"]):
        for i in range(6):
            write_image(root / cls / f"{cls}_{i}.jpg", seed=10 * c + i)
    write_image(root / "cats" / "gray.png", mode="L", seed=99)
    write_image(root / "dogs" / "alpha.png", mode="RGBA", seed=98)
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "cats" / "notes.txt").write_text("not an image")
    return root


def execute_source_notebook(name, workdir, stop_before=None, timeout=600):
    """Execute notebooks/source/<name>.ipynb (up to the markdown cell starting with `stop_before`).

    Returns (notebook, errors, text): the executed notebook, its error outputs as (cell, name,
    value) and the text of every output (streams, plain and Markdown displays).
    """
    import nbformat
    from nbclient import NotebookClient

    from course_lib.tools import notebooks

    root = notebooks.repo_root(pathlib.Path(__file__).parent)
    nb = nbformat.read(root / "notebooks" / "source" / f"{name}.ipynb", as_version=4)
    if stop_before:
        nb.cells = nb.cells[:next(i for i, c in enumerate(nb.cells)
                                  if c.cell_type == "markdown" and c.source.startswith(stop_before))]
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "")
                     + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells for o in c.get("outputs", []))
    return nb, errors, text


def tiny_top_problem(backbone, seed=0):
    """The top 3 blocks of a 32px random-weight MobileNetV2 (input 1x1x160) and a head, with 16 inputs and labels."""
    import keras

    from course_lib import features, finetune

    finetune.freeze(backbone)
    _, top = finetune.split_at_block(backbone, "mobilenet_v2", 3)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (16, 1, 1, 160)).astype("float32")
    y = np.arange(16) % 2
    keras.utils.set_random_seed(seed)
    model = finetune.classifier(top, features.make_head(1280, 2))
    return model, (x, y)


def toy_imageset(counts, name="toy"):
    """An ImageSet of fake file names with `counts[k]` images of class k (nothing is read)."""
    from course_lib import data

    labels = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    return data.ImageSet(name, [f"img{i}.jpg" for i in range(len(labels))], labels,
                         [f"c{k}" for k in range(len(counts))], "test")
