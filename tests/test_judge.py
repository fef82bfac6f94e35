"""course_lib.tools.wire and judge without a kernel: answers travel as data, files are read safely, and the judge
runs tests on answers served from a namespace (as `judge_link.InKernel` does in CI's graded copies), and an answer
passed back to a submitted function arrives as the kernel's own object."""

import os
import types

import numpy as np
import pytest

from course_lib.tools import judge, judge_link, wire


def _round_trip(value, tmp_path, load_model=None):
    files = wire.Files(tmp_path, "a")
    tree = wire.loads(wire.dumps(wire.encode(value, files, functions=lambda f: {"t": "function", "ref": "r"})))
    return wire.decode(tree, wire.Files(tmp_path, ""), functions=lambda t: ("remote", t["ref"]),
                       load_model=load_model)


def test_answers_travel_as_data_and_other_objects_as_placeholders(tmp_path):
    class Mine:
        def __array_function__(self, *a):
            return True

    value = {"n": [1, 2.5, "s", None, True], 3: (np.arange(4), np.float32(2.0)), "f": len, "obj": Mine(),
             "yields": (i * i for i in range(3)), "fitting": {"tabby", "tiger_cat"}, "mixed": {1, object()}}
    out = _round_trip(value, tmp_path)
    assert out["n"] == [1, 2.5, "s", None, True] and out["f"] == ("remote", "r") and out["yields"] == [0, 1, 4]
    assert out["fitting"] == {"tabby", "tiger_cat"} and isinstance(out["mixed"], wire.Opaque)
    assert np.array_equal(out[3][0], np.arange(4)) and isinstance(out[3][1], np.float32)
    assert isinstance(out["obj"], wire.Opaque)
    with pytest.raises(TypeError, match="Mine"):
        out["obj"].shape
    with pytest.raises(wire.WireError, match="Python objects"):
        _round_trip(np.array([object()]), tmp_path)


def test_a_model_travels_as_a_keras_file_loaded_in_safe_mode(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    def load(data):
        (tmp_path / "m.keras").write_bytes(data)
        return keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)

    back = _round_trip(model, tmp_path, load)
    x = np.ones((1, 3), "float32")
    assert np.allclose(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_files_are_read_as_regular_files_only_and_written_without_following_links(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the hidden tests")
    (tmp_path / "work").mkdir()
    os.symlink(secret, tmp_path / "work" / "answer-1.npy")
    os.mkfifo(tmp_path / "work" / "answer-2.npy")
    files = wire.Files(tmp_path / "work", "")
    for name, why in (("answer-1.npy", "cannot be read"), ("answer-2.npy", "not a regular file"),
                      ("../secret.txt", "plain file name")):
        with pytest.raises(wire.WireError, match=why):
            files.read(name)
    name = wire.Files(tmp_path / "work", "judge").write(".json", b"{}")
    assert (tmp_path / "work" / name).read_bytes() == b"{}" and secret.read_text() == "the hidden tests"


def test_a_tests_free_names_are_the_answers_it_reads():
    code = ("_c = {n: m.count_params() for n, m in candidates.items()}\n"
            "def _f(v):\n    return v + offset\n"
            "assert all(abs(per_image[_n]) for _n in _c) and np.allclose(x, 1) and cfg.profile and len(why)\n")
    assert judge.free_names(code) == ["candidates", "offset", "per_image", "why", "x"]


def _judged(tests: dict, question: str, space: dict, folder) -> list[dict]:
    """A judge process's verdicts on `question`, with this process serving the answers in `space` (as a kernel)."""
    from course_lib.tools import answers

    count = [0]

    def serve(request):
        count[0] += 1
        prefix = f"answer-{count[0]}"
        try:
            if "fetch" in request:
                name = request["fetch"]
                if name not in space:
                    raise NameError(name)
                answers._write(wire.encode(space[name], wire.Files(folder, prefix), functions=answers._function,
                                           refs=answers._ref), str(folder), prefix)
            else:
                answers.call(request["call"], request["request"], str(folder), prefix)
        except Exception as exc:  # noqa: BLE001 - as the grader reports a kernel's error
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"file": f"{prefix}.json"}

    j = judge_link.Judge(tests, folder)
    try:
        return j.question(question, serve, timeout=600)
    finally:
        j.close()


@pytest.mark.slow
def test_the_judge_runs_tests_on_served_answers_and_calls_functions_in_the_serving_process(tmp_path):
    """A judge process, with this process serving the answers: verdicts, a function call, a missing answer."""
    space = {"x": np.arange(3.0), "double": lambda v: v * 2, "boom": lambda: (_ for _ in ()).throw(
        type("MissingResourceError", (Exception,), {})("mine")), "layer": types.SimpleNamespace(kind="layer")}
    space["is_layer"] = lambda v, w: v is space["layer"] and w is space["x"]
    tests = {"q1": {"points": 5, "cases": [
        {"code": "assert np.allclose(double(x), [0, 2, 4])\n", "hidden": False, "points": 1, "message": ""},
        {"code": "assert is_layer(layer, x) is True\n", "hidden": False, "points": 1, "message": ""},
        {"code": "assert np.allclose(x, 1)\n", "hidden": True, "points": 1, "message": ""},
        {"code": "assert missing == 1\n", "hidden": True, "points": 1, "message": ""},
        {"code": "boom()\n", "hidden": True, "points": 1, "message": ""}]}}
    results = _judged(tests, "q1", space, tmp_path)
    # an answer passed back to a submitted function is the kernel's own object (test 2)
    assert [r["passed"] for r in results] == [True, True, False, False, False], results
    assert "NameError" in results[3]["message"]
    assert "MissingResourceError" in results[4]["message"] and not results[4]["machine"]  # the student's, not ours


@pytest.mark.slow
def test_a_model_a_test_sends_comes_back_changed_in_place(tmp_path):
    """03's q4 hidden test: the judge builds a model, the learner's start_fine_tuning unfreezes and recompiles it
    in the kernel, and the judge's model then has the new trainable flags (nested layers too) and optimizer."""
    import json

    import keras

    import course_lib as cl
    from tests.wrong_answers import ROOT, test_cells

    cells = json.loads((ROOT / "notebooks/source/03_fine_tuning.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "def start_fine_tuning" in "".join(c["source"]))
    function = source[source.index("def start_fine_tuning"):source.index("start_fine_tuning(model, FIRST_BLOCK")]
    space = {"cl": cl, "keras": keras}
    exec(function, space)  # the notebook's solution
    code = [c for kind, c in test_cells("03_fine_tuning", "q4") if kind == "hidden"][0]
    cases = [{"code": code.split("END TEST CONFIG", 1)[1].split("\n", 1)[1], "hidden": True, "points": 1,
              "message": ""}]
    right = {"BACKBONE": "mobilenet_v2", "start_fine_tuning": space["start_fine_tuning"]}
    assert [r["passed"] for r in _judged({"q4": {"points": 1, "cases": cases}}, "q4", right, tmp_path)] == [True]

    def no_recompile(model, first_block, learning_rate):  # unfreezes, but the optimizer keeps its rate
        cl.recipe.find_backbone(model).trainable = True

    wrong = dict(right, start_fine_tuning=no_recompile)
    assert [r["passed"] for r in _judged({"q4": {"points": 1, "cases": cases}}, "q4", wrong, tmp_path)] == [False]


@pytest.mark.slow
def test_a_model_that_would_take_the_judge_past_its_memory_limit_fails_its_test_and_the_judge_goes_on(tmp_path):
    """A crafted `.keras` answer: a few kilobytes whose config declares a 40 GB layer. The judge's address space
    is limited (`judge_link.MEMORY_BYTES`), so loading it fails that test, not the grading machine."""
    import json
    import zipfile

    import keras

    small = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10)])
    small.save(tmp_path / "small.keras")
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(tmp_path / "small.keras") as src, zipfile.ZipFile(crafted, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                data = data.decode().replace("10]", "100000]").replace('"units": 10', '"units": 100000').encode()
            out.writestr(info, data)
    assert '"units": 100000' in zipfile.ZipFile(crafted).read("config.json").decode()
    tests = {"q1": {"points": 1, "cases": [{"code": "assert model.count_params() > 0\n", "hidden": True,
                                            "points": 1, "message": ""}]},
             "q2": {"points": 1, "cases": [{"code": "assert x == 2\n", "hidden": True, "points": 1, "message": ""}]}}

    def serve(request):
        name = f"answer-{request['fetch']}"
        if request["fetch"] == "model":
            (tmp_path / f"{name}.keras").write_bytes(crafted.read_bytes())
            tree = {"t": "model", "file": f"{name}.keras"}
        else:
            tree = {"t": "value", "v": 2}
        (tmp_path / f"{name}.json").write_text(json.dumps(tree))
        return {"file": f"{name}.json"}

    j = judge_link.Judge(tests, tmp_path)
    try:
        first, second = j.question("q1", serve, timeout=600), j.question("q2", serve, timeout=600)
    finally:
        j.close()
    assert not first[0]["passed"] and not first[0]["machine"], first
    assert "could not be loaded safely (ResourceExhaustedError" in first[0]["message"], first
    assert second[0]["passed"], second  # the judge is still there


def test_a_kernel_that_stops_leaves_no_judge_or_public_tests_folder_behind(tmp_path):
    """CI's graded copies start `InKernel` and every student notebook runs the grader cell: both folders in the
    temporary directory go when the kernel's process ends."""
    import subprocess
    import sys

    from course_lib.tools import grader_cell

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = (f"from course_lib.tools.judge_link import InKernel\n_judge = InKernel({{}})\n"
            f"{grader_cell.grader_cell_source({'q1': 'OK_FORMAT = False'})}\n"
            f"import os\nprint(sorted(n[:-9] for n in os.listdir({str(tmp)!r})))\n")
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": judge_link._course_lib_parent()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)  # otter writes its log there
    assert out.returncode == 0, out.stderr[-2000:]
    while_running = out.stdout.strip().splitlines()[-1]
    assert while_running == "['course_judge_answers', 'course_judge_cwd', 'otter_tests']", out.stdout
    assert list(tmp.iterdir()) == []  # after it ended


@pytest.mark.slow
def test_the_judge_imports_tensorflow_only_when_a_test_uses_it_and_seeds_it_as_at_the_start_of_the_case(tmp_path):
    """A test that reads NumPy answers leaves TensorFlow unloaded (the questionnaire, most failed answers); one that
    first touches it mid-case draws the same numbers as when it was loaded before the case (seeded, the NumPy
    stream untouched)."""
    def case(code):
        return {"code": code, "hidden": True, "points": 1, "message": ""}

    draws = ("import random\n_a = np.random.rand(), random.random()\n_t = float(tf.random.uniform(()))\n"
             "_k = cl.backbones.__name__\n_b = np.random.rand(), random.random()\n"
             "raise ValueError(repr((_a, _t, _b)))\n")
    tests = {"q1": {"points": 2, "cases": [case("import sys\nassert 'tensorflow' not in sys.modules\n"),
                                           case("assert cl.quiz.__name__ and np.allclose(x, 1)\n")]},
             "q2": {"points": 1, "cases": [case(draws)]},
             "q3": {"points": 2, "cases": [case("assert keras.__name__\n"), case(draws)]},
             # a test's own import (03 imports its probe layer) loads and seeds TensorFlow before the test runs
             "q5": {"points": 1, "cases": [case(draws.replace("_a = ", "from course_lib.tools import probes\n_a = "))]}}
    space = {"x": np.ones(3)}
    assert [r["passed"] for r in _judged(tests, "q1", space, tmp_path)] == [True, True]
    lazy = _judged(tests, "q2", space, tmp_path)[0]["message"]
    loaded = _judged(tests, "q3", space, tmp_path)[1]["message"]
    assert lazy.startswith("ValueError: (") and lazy == loaded, (lazy, loaded)
    assert _judged(tests, "q5", space, tmp_path)[0]["message"] == loaded


@pytest.mark.slow
def test_answers_that_fill_the_judges_memory_never_make_its_late_tensorflow_import_fail(tmp_path, monkeypatch):
    """TensorFlow is imported when a test first uses it, maybe after the answers took most of the memory limit: the
    import has address space of its own (`judge_libraries.IMPORT_HEADROOM`), so it is never the grading machine's
    failure; the answers' limit is back after it."""
    monkeypatch.setattr(judge_link, "MEMORY_BYTES", 1536 << 20)  # 1.1 GiB taken, then TensorFlow's 1.8 GiB
    code = ("_big = np.ones((1100 << 20) // 8)\nassert tf.__version__\nimport resource\n"
            "assert resource.getrlimit(resource.RLIMIT_AS)[0] == 1536 << 20  # the answers' limit again\n")
    tests = {"q1": {"points": 1, "cases": [{"code": code, "hidden": True, "points": 1, "message": ""}]}}
    result = _judged(tests, "q1", {}, tmp_path)[0]
    assert result["passed"] and not result["machine"], result


def test_tensorflow_is_loaded_before_an_answer_or_a_test_that_would_load_it_unseeded():
    """`judge_libraries`: an answer holding a model, a layer, a dataset or a tensor, and a test importing Keras,
    TensorFlow or course_lib, load TensorFlow through the judge (seeded); NumPy answers and tests do not."""
    from course_lib.tools import judge_libraries as libraries

    model = {"t": "dict", "items": [[{"t": "value", "v": "head"}, {"t": "model", "file": "a.keras"}]]}
    assert libraries.holds_tensorflow(model) and libraries.holds_tensorflow({"t": "array", "file": "x.npy",
                                                                              "tensor": True})
    assert not libraries.holds_tensorflow({"t": "list", "items": [{"t": "array", "file": "x.npy"},
                                                                  {"t": "value", "v": 1}]})
    assert libraries.imports_them("from course_lib.tools import probes\n") and libraries.imports_them("import keras")
    assert not libraries.imports_them("import math\nassert cl.quiz.correct(quiz, 'x', 1, 'h')\n")


@pytest.mark.slow
def test_only_the_judges_own_libraries_failing_to_import_are_the_machines(tmp_path, monkeypatch):
    """A Keras the judge cannot import (here a stand-in that raises) makes the test the machine's failure; an answer
    naming a course_lib class that does not exist fails its own test, as the student's."""
    import json

    broken = tmp_path / "broken"
    (broken / "keras").mkdir(parents=True)
    (broken / "keras" / "__init__.py").write_text("raise ImportError('this machine has a broken Keras')\n")
    real = judge_link._course_lib_parent()
    tests = {"q1": {"points": 2, "cases": [
        {"code": "assert x is not None\n", "hidden": True, "points": 1, "message": ""},
        {"code": "assert tf.constant(1.0) is not None\n", "hidden": True, "points": 1, "message": ""}]}}

    def serve(request):  # the kernel's answer: a class course_lib does not have
        (tmp_path / "answer-x.json").write_text(json.dumps({"t": "class", "class": "course_lib.nothing:Here"}))
        return {"file": "answer-x.json"}

    def judged():
        j = judge_link.Judge(tests, tmp_path)
        try:
            return j.question("q1", serve, timeout=600)
        finally:
            j.close()

    student = judged()[0]
    monkeypatch.setattr(judge_link, "_course_lib_parent", lambda: f"{broken}{os.pathsep}{real}")
    machine = judged()[1]
    assert not student["passed"] and not student["machine"] and "not a class of course_lib" in student["message"]
    assert not machine["passed"] and "broken Keras" in machine["machine"], machine
