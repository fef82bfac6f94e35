"""A quiet console: TensorFlow's start-up noise dropped, real errors kept, no kernel transport warning."""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from course_lib import quiet
from course_lib.tools import runner

# Lines TensorFlow 2.21 printed on the course's 2-core CPU machine, verbatim (before this change).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796132999.325774   28299 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
]
CUDA = [
    "I0000 00:00:1796132999.326899   28299 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.\n",
    "E0000 00:00:1796133008.499901   28299 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)\n",
]
REAL = "E0000 00:00:1796133011.880295   28299 some_kernel.cc:682] a genuine error from a TensorFlow op\n"
HARMLESS = ("E0000 00:00:1796168895.888859   20431 node_def_util.cc:682] NodeDef mentions attribute "
            "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; signature=input_dataset:"
            "variant, other_arguments: -> handle:variant; attr=f:func> This may be expected if your graph generating "
            "binary is newer  than this binary. Unknown attributes will be ignored. NodeDef: "
            "{{node ParallelMapDatasetV2/_14}}\n")
PREDICT = ("import keras, numpy as np\nm = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
           "print('predicted', m.predict(np.zeros((8, 4), 'float32'), verbose=0).shape)")
UNWANTED = ("cuInit", "oneDNN", "without encryption", "absl::InitializeLog", "cuda drivers", "use_unbounded_threadpool")


def test_only_the_startup_lines_are_dropped():
    own = "a learner's own print that mentions cuInit and oneDNN\n"
    text = "".join(NOISE + [REAL] + CUDA + [own])
    assert quiet.drop_startup_noise(text, cuda_noise=True) == REAL + own
    assert quiet.drop_startup_noise(text, cuda_noise=False) == REAL + "".join(CUDA) + own, \
        "on a GPU machine the CUDA failures stay"


def test_filter_works_on_file_descriptor_2_and_keeps_other_lines(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setattr(quiet, "gpu_hardware", lambda: False)
    with quiet.tensorflow_started():
        for line in NOISE + CUDA + [REAL]:
            os.write(2, line.encode())
    assert capfd.readouterr().err == REAL


def test_log_level_0_shows_everything(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with quiet.tensorflow_started():
        os.write(2, NOISE[1].encode())
    assert capfd.readouterr().err == NOISE[1]


def test_kernel_env_sets_the_log_level_before_tensorflow_but_keeps_the_learners():
    assert quiet.kernel_env({"PATH": "/bin"}) == {"PATH": "/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert quiet.kernel_env({"TF_CPP_MIN_LOG_LEVEL": "0"})["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_course_run_kernel_is_quiet_and_real_errors_still_show(tmp_path, isolated_cache, monkeypatch, capfd):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the runner's own default, not conftest's
    # ipykernel copies C++ (file descriptor) output into cells except under pytest: run the kernel as in Jupyter
    kernel_env = quiet.kernel_env
    monkeypatch.setattr(quiet, "kernel_env", lambda: {k: v for k, v in kernel_env().items()
                                                      if k != "PYTEST_CURRENT_TEST"})
    nb = new_notebook(cells=[
        new_code_cell("import course_lib as cl\ncfg = cl.setup('99_quiet')"),
        new_code_cell(f"import os\nos.write(2, {REAL.encode()!r})"),
        new_code_cell("raise ValueError('an intentional error')"),
        new_code_cell(PREDICT),  # TF logs its use_unbounded_threadpool ERROR here, under op determinism
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "course" / "notebooks" / "source" / "99_quiet.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    rep = runner.run_course(tmp_path / "out", "fast", root=tmp_path / "course")
    out, err = capfd.readouterr()
    assert not [line for line in (out + err).splitlines() if any(u in line for u in UNWANTED)], out + err
    assert REAL.strip() in err, "a real C++ error line from a cell still reaches the console"
    (result,) = rep["notebooks"]
    assert result["status"] == "failed" and result["error_cells"] == [2] and result["cells_run"] == 4
    assert "99_quiet  failed  4/4" in out
    executed = nbformat.read(tmp_path / "out" / "executed" / "99_quiet.ipynb", as_version=4)
    setup_out = executed.cells[0].outputs
    assert [o["name"] for o in setup_out] == ["stdout"] and "device   : " in setup_out[0]["text"]
    assert REAL in "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert executed.cells[2].outputs[0]["ename"] == "ValueError"
    assert "predicted (8, 2)" in "".join(o.get("text", "") for o in executed.cells[3].outputs)
    assert not [o for c in executed.cells for o in c.outputs if "use_unbounded_threadpool" in o.get("text", "")]


def test_the_unbounded_threadpool_line_is_raised_by_predict_and_kept_at_log_level_0(tmp_path, monkeypatch, capfd):
    # the line this filter drops is real: a kernel with TF_CPP_MIN_LOG_LEVEL=0 (nothing filtered) shows it
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    kernel_env = quiet.kernel_env
    monkeypatch.setattr(quiet, "kernel_env", lambda: {k: v for k, v in kernel_env().items()
                                                      if k != "PYTEST_CURRENT_TEST"})
    nb = new_notebook(cells=[new_code_cell("import course_lib as cl\ncfg = cl.setup('99_loud', silent=True)"),
                             new_code_cell(PREDICT)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "course" / "notebooks" / "source" / "99_loud.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    runner.run_course(tmp_path / "out", "fast", root=tmp_path / "course")
    out, err = capfd.readouterr()
    executed = nbformat.read(tmp_path / "out" / "executed" / "99_loud.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert "use_unbounded_threadpool" in shown, shown
    assert "use_unbounded_threadpool" in err


def test_the_filter_drops_only_that_line_even_when_it_arrives_in_pieces(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    written = []

    class Stream:
        watch_fd_thread = None

        def write(self, text):
            written.append(text)

        def flush(self):
            written.append("<flush>")

    stream = Stream()
    assert quiet.filter_kernel_stderr(stream) and not quiet.filter_kernel_stderr(stream), "installed once"
    text = REAL + HARMLESS + "Epoch 1/2\r" + HARMLESS + "a learner's E"
    for i in range(0, len(text), 100):  # ipykernel's reads cut lines anywhere
        stream.write(text[i:i + 100])
    stream.flush()
    assert "".join(written) == REAL + "Epoch 1/2\r" + "a learner's E" + "<flush>"
    for _cell in range(2):  # IPython's tee around a cell: save write, set its wrapper, put the saved one back
        saved = stream.write
        stream.write = lambda text, saved=saved: written.append("<tee>") or saved(text)
        written.clear()
        stream.write(HARMLESS + "cell output\n")
        assert written == ["<tee>", "cell output\n"], "the filter runs under IPython's wrapper"
        stream.write = saved
        written.clear()
        stream.write(HARMLESS)  # between cells (the fd watcher)
        assert written == []
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    stream.write(HARMLESS)
    assert written[-1] == HARMLESS, "TF_CPP_MIN_LOG_LEVEL=0 shows every line"
    assert quiet.filter_kernel_stderr(object()) is False, "a plain stream (a terminal) is left alone"

    class Slotted:  # a stream that takes no new attribute: left as it is, setup goes on
        __slots__ = ("watch_fd_thread",)

        def write(self, text):
            written.append(text)

    slotted = Slotted()
    slotted.watch_fd_thread = None
    assert quiet.filter_kernel_stderr(slotted) is False and type(slotted) is Slotted


def test_kernel_connection_is_encrypted_or_ipc(monkeypatch):
    cfg = quiet.kernel_config()
    assert cfg.KernelManager.get("transport_encryption") == "auto" or cfg.KernelManager.get("transport") == "ipc"
    monkeypatch.setattr(quiet, "_spec_supports_curve", lambda name: False)
    if os.name == "posix":
        assert quiet.kernel_config().KernelManager.transport == "ipc"
