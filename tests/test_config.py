"""Profiles, settings and setup()."""

import pytest

from course_lib import config


def test_profiles_differ_and_fast_is_smaller():
    fast, full = config.PROFILES["fast"], config.PROFILES["full"]
    assert fast.train_per_class and full.train_per_class is None
    assert fast.epochs < full.epochs and fast.finetune_epochs < full.finetune_epochs
    assert fast.pick(1, 2) == 1 and full.pick(1, 2) == 2


def test_one_setting_overrides_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert config.get_profile().name == "full"
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    assert config.get_profile().name == "fast"


def test_cpu_default_is_fast(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(config, "accelerator", lambda: "cpu")
    assert config.get_profile().name == "fast"
    monkeypatch.setattr(config, "accelerator", lambda: "gpu")
    assert config.get_profile().name == "full"


def test_unknown_profile_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match=r"COURSE_PROFILE='turbo'.*fast, full"):
        config.get_profile()


def test_bad_seed(monkeypatch):
    monkeypatch.setenv("COURSE_SEED", "abc")
    with pytest.raises(ValueError, match="COURSE_SEED must be an integer"):
        config.seed_value()


def test_setup_prints_profile_and_mode(capsys, monkeypatch, isolated_cache):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    monkeypatch.delenv("COURSE_MIRROR", raising=False)
    cfg = config.setup("00_setup", seed=3)
    out = capsys.readouterr().out
    assert "profile  : fast" in out and "online" in out and "seed     : 3" in out
    assert cfg.seed == 3 and cfg.profile.name == "fast"


def test_setup_seed_makes_numbers_repeat(isolated_cache):
    import numpy as np
    import tensorflow as tf

    config.setup("x", seed=7, quiet=True)
    a = (np.random.rand(3), tf.random.uniform((3,)).numpy())
    config.setup("x", seed=7, quiet=True)
    b = (np.random.rand(3), tf.random.uniform((3,)).numpy())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_import_does_no_work():
    import subprocess
    import sys

    code = "import sys, course_lib; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
