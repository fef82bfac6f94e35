"""Offline mode: the online code path reads a Keras cache; no network and no mirror gives one clear error.

Each child process runs with sockets disabled (NO_NETWORK), so these tests pass on a connected
machine too.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest


# Prepended to every child: no connection can open, whatever network the machine has.
NO_NETWORK = """
import socket
def _refuse(*args, **kwargs):
    raise OSError(101, "Network is unreachable (no network, simulated by the test)")
socket.create_connection = socket.getaddrinfo = socket.socket.connect = socket.socket.connect_ex = _refuse
"""


def _run(code, env):
    full = {k: v for k, v in os.environ.items() if k not in ("COURSE_MIRROR", "KERAS_HOME")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)], capture_output=True,
                          text=True, env=full, timeout=300)


def test_the_simulated_machine_has_no_network(tmp_path):
    res = _run("""
        from course_lib import errors
        print("REACHABLE" if errors.network_available("storage.googleapis.com", timeout=1) else "UNREACHABLE")
    """, {"COURSE_CACHE": str(tmp_path / "c")})
    assert "UNREACHABLE" in res.stdout, res.stderr[-2000:]


def test_online_path_uses_keras_imagenet_loader_with_a_cache(mirror_root, tmp_path):
    """weights='imagenet' (the real online path) works when Keras' cache holds the file."""
    home = tmp_path / "keras_home"
    shutil.copytree(mirror_root / "keras", home)
    code = """
        import course_lib as cl
        m = cl.backbones.load("mobilenet_v2", 224)
        print("OK", m.count_params())
    """
    res = _run(code, {"KERAS_HOME": str(home), "COURSE_CACHE": str(tmp_path / "c")})
    assert "OK 2257984" in res.stdout, res.stderr[-2000:]


def test_no_network_no_mirror_fails_with_one_clear_message(tmp_path):
    code = """
        import course_lib as cl
        try:
            cl.backbones.load("efficientnet_b0", 224)
        except cl.errors.MissingResourceError as e:
            print("CLEAR:", e)
    """
    res = _run(code, {"KERAS_HOME": str(tmp_path / "empty_home"), "COURSE_CACHE": str(tmp_path / "c")})
    out = res.stdout
    assert "CLEAR: Cannot get the ImageNet weights of EfficientNetB0 (efficientnetb0_notop.h5)" in out, \
        res.stderr[-2000:]
    assert "COURSE_MIRROR" in out and "URL fetch failure" not in out


def test_tfds_without_network_is_clear(tmp_path):
    code = """
        import course_lib as cl
        try:
            cl.data.load("flowers")
        except cl.errors.MissingResourceError as e:
            print("CLEAR:", e)
    """
    res = _run(code, {"COURSE_CACHE": str(tmp_path / "c"), "TFDS_DATA_DIR": str(tmp_path / "tfds")})
    assert "CLEAR: Cannot get the TFDS dataset (tf_flowers)" in res.stdout, res.stderr[-3000:]


def test_mirror_that_does_not_exist(monkeypatch):
    from course_lib import errors, mirror

    monkeypatch.setenv("COURSE_MIRROR", "/no/such/mirror")
    with pytest.raises(errors.MissingResourceError, match="does not exist.*COURSE_MIRROR=/no/such/mirror"):
        mirror.active()


def test_missing_mirror_file_is_named(tmp_path, monkeypatch, isolated_cache):
    from course_lib import data, errors

    (tmp_path / "m" / "keras" / "models").mkdir(parents=True)
    monkeypatch.setenv("COURSE_MIRROR", str(tmp_path / "m"))
    with pytest.raises(errors.MissingResourceError, match=r"has no datasets/pacs"):
        data.load("pacs/photo", allow_override=False)
    with pytest.raises(errors.MissingResourceError, match=r"has no datasets/digits/usps.npz"):
        data.load_digits("usps")
