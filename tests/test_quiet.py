"""A quiet console: TensorFlow's start-up noise dropped, real errors kept, no kernel transport warning."""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from course_lib import quiet, runner

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
UNWANTED = ("cuInit", "oneDNN", "without encryption", "absl::InitializeLog", "cuda drivers")


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
    assert result["status"] == "failed" and result["error_cells"] == [2] and result["cells_run"] == 3
    assert "99_quiet  failed  3/3" in out
    executed = nbformat.read(tmp_path / "out" / "executed" / "99_quiet.ipynb", as_version=4)
    setup_out = executed.cells[0].outputs
    assert [o["name"] for o in setup_out] == ["stdout"] and "device   : " in setup_out[0]["text"]
    assert REAL in "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert executed.cells[2].outputs[0]["ename"] == "ValueError"


def test_kernel_connection_is_encrypted_or_ipc(monkeypatch):
    cfg = quiet.kernel_config()
    assert cfg.KernelManager.get("transport_encryption") == "auto" or cfg.KernelManager.get("transport") == "ipc"
    monkeypatch.setattr(quiet, "_spec_supports_curve", lambda name: False)
    if os.name == "posix":
        assert quiet.kernel_config().KernelManager.transport == "ipc"
