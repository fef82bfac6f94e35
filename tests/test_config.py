"""Profiles, settings and setup()."""

import pytest

from course_lib import config, session


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


@pytest.mark.parametrize("value", ["-1", str(2**32), "abc", "4.5", "1e3"])
def test_seed_outside_numpys_range_names_the_variable_value_and_range(monkeypatch, value):
    monkeypatch.setenv("COURSE_SEED", value)
    with pytest.raises(ValueError) as info:
        config.seed_value()
    text = str(info.value)
    assert f"COURSE_SEED={value!r}" in text and "0..4294967295" in text and "Fix: export COURSE_SEED=42" in text


@pytest.mark.parametrize("value, expected", [("0", 0), (str(2**32 - 1), 2**32 - 1), (" 7 ", 7), ("", 42)])
def test_seed_edges_and_default(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_SEED", value)
    assert config.seed_value() == expected


@pytest.mark.parametrize("bad", [-1, 2**32, 3.5, "7", True, None])
def test_setup_refuses_a_seed_outside_0_to_2_32(bad, isolated_cache):
    with pytest.raises(ValueError, match=rf"seed must be an integer in 0\.\.4294967295 .*Received: seed={bad!r}\."):
        config.check_seed(bad)
    if bad is not None:  # setup(seed=None) reads COURSE_SEED instead
        with pytest.raises(ValueError, match=r"^seed must be an integer in 0\.\.4294967295"):
            session.setup("x", seed=bad, silent=True)


def test_numpy_integers_are_integers():
    import numpy as np

    assert config.as_int(np.int64(144)) == 144 and type(config.as_int(np.uint8(3))) is int
    assert config.as_int(True) is None and config.as_int(np.bool_(True)) is None and config.as_int(3.0) is None
    assert config.check_seed(np.int64(2**32 - 1)) == 2**32 - 1


def test_backbone_loads_real_weights_at_a_numpy_integer_size(mirror_root, monkeypatch, isolated_cache):
    import numpy as np

    from course_lib import backbones

    monkeypatch.setenv("COURSE_MIRROR", str(mirror_root))
    model = backbones.load("mobilenet_v2", image_size=np.int64(144))
    assert model.input_shape == (None, 144, 144, 3) and model.output_shape == (None, 1280)
    assert backbones.load("mobilenet_v2", np.int32(32), weights=None).input_shape == (None, 32, 32, 3)
    for bad in (np.float32(144), True, "144"):
        with pytest.raises(ValueError, match=rf"image_size must be an integer >= 32 .*Received: image_size="):
            backbones.load("mobilenet_v2", bad, weights=None)


def test_no_budget_leaves_every_pick_as_the_profile_has_it(monkeypatch):
    monkeypatch.delenv("COURSE_BUDGET", raising=False)
    budget = config.get_budget()
    assert budget.name == "none" and not budget.reduced
    full = config.PROFILES["full"]
    assert config.budgeted(full, budget) is full
    cfg = session.Settings("x", full, 0, None, None, "cpu", budget)
    assert cfg.epochs(6, 10) == 10 and cfg.per_class(30, None) is None and cfg.per_class(1, (10, 30, 60)) == (10, 30, 60)
    assert cfg.repeats(3, [0, 1, 2, 3, 4]) == [0, 1, 2, 3, 4] and cfg.sweep(1, [1, 2, 3]) == [1, 2, 3]
    assert cfg.count(32, 128) == 128


def test_the_smoke_budget_caps_the_full_profile_and_keeps_its_code_path(monkeypatch):
    monkeypatch.setenv("COURSE_BUDGET", "smoke")
    budget = config.get_budget()
    assert budget.reduced
    profile = config.budgeted(config.PROFILES["full"], budget)
    assert profile.name == "full" and profile.pick(1, 2) == 2, "the full profile's branches still run"
    assert profile.epochs == profile.finetune_epochs == budget.epochs
    assert profile.train_per_class == profile.val_per_class == profile.test_per_class == budget.per_class
    cfg = session.Settings("x", profile, 0, None, None, "cpu", budget)
    assert cfg.epochs(6, 10) == 2 and cfg.per_class(30, None) == budget.per_class == 8
    # a per-class sweep is scaled so that its largest point is the cap, then thinned to its two ends
    assert cfg.per_class(1, (10, 30, 60, 100)) == (1, 8)
    assert cfg.per_class(1, [1, 3, 10, 30, 100, 300, 700]) == [1, 8]
    assert cfg.per_class(1, (2, 4)) == (2, 4), "a sweep under the cap keeps its points"
    assert cfg.sweep(1, [96, 128, 160, 192, 224, 320]) == [96, 320]
    one = config.Caps("one", per_class=8, sweep=1)
    assert one.cap("per_class", (10, 30, 60, 100)) == (8,) and one.cap("sweep", [1, 2, 3]) == [3]
    assert cfg.repeats(3, [0, 1, 2, 3, 4]) == [0, 1] and cfg.repeats(3, 5) == 2
    assert cfg.count(32, 128) == 16 and cfg.count(32, 5) == 5


def test_unknown_budget_says_what_is_allowed(monkeypatch):
    monkeypatch.setenv("COURSE_BUDGET", "tiny")
    with pytest.raises(ValueError, match=r"COURSE_BUDGET='tiny'.*none, smoke.*unset COURSE_BUDGET"):
        config.get_budget()


def test_claims_are_recorded_not_judged_under_a_reduced_budget(monkeypatch, tmp_path, capsys):
    from course_lib import report

    monkeypatch.setenv("COURSE_METRICS_FILE", str(tmp_path / "m.jsonl"))
    monkeypatch.setenv("COURSE_BUDGET", "smoke")
    report.claim("something holds", False, "x=1")
    assert "not judged, reduced budget (did not hold)" in capsys.readouterr().out
    monkeypatch.delenv("COURSE_BUDGET")
    with pytest.raises(AssertionError, match="did not hold: something holds"):
        report.claim("something holds", False, "x=1")
    monkeypatch.setenv("COURSE_BUDGET", "smoke")
    with pytest.raises(AssertionError, match="did not hold: reload predicts the same"):
        report.claim("reload predicts the same", False, mechanics=True)  # a fact of the mechanics: any budget
    records = report.read(tmp_path / "m.jsonl")
    assert [(r["passed"], r["judged"]) for r in records] == [(False, False), (False, True), (False, True)]


def test_setup_prints_profile_and_mode(capsys, monkeypatch, isolated_cache):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    monkeypatch.delenv("COURSE_MIRROR", raising=False)
    cfg = session.setup("00_setup", seed=3)
    out = capsys.readouterr().out
    assert "profile  : fast" in out and "online" in out and "seed     : 3" in out
    # the profile's defaults are not what every notebook uses (03: 112 px), so the banner does not print them
    assert "image_size=" not in out and "per class=" not in out and "epochs=" not in out
    assert "each notebook sets its own image size, epochs and images per class" in out
    assert cfg.seed == 3 and cfg.profile.name == "fast"


def test_setup_seed_makes_numbers_repeat(isolated_cache):
    import numpy as np
    import tensorflow as tf

    session.setup("x", seed=7, silent=True)
    a = (np.random.rand(3), tf.random.uniform((3,)).numpy())
    session.setup("x", seed=7, silent=True)
    b = (np.random.rand(3), tf.random.uniform((3,)).numpy())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_import_does_no_work():
    import subprocess
    import sys

    code = "import sys, course_lib; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def _rooms():
    """The two rooms as {room: {module stem: path}}: the learners' library and the machinery (course_lib/tools/)."""
    import pathlib

    import course_lib

    root = pathlib.Path(course_lib.__file__).parent
    return {room: {p.stem: p for p in folder.glob("*.py") if p.stem != "__init__"}
            for room, folder in (("course_lib", root), ("course_lib.tools", root / "tools"))}


def test_every_module_is_in_the_readme_and_in_the_lazy_loader():
    import pathlib
    import re

    import course_lib

    readme = (pathlib.Path(course_lib.__file__).parent.parent / "README.md").read_text()
    rooms = _rooms()
    for room, heading in (("course_lib", "| `course_lib/` |"), ("course_lib.tools", "| `course_lib/tools/` |")):
        row = next(line for line in readme.splitlines() if line.startswith(heading))
        listed = set(re.findall(r"`(\w+)`", row))
        modules = set(rooms[room])
        assert modules <= listed, f"not in the README's layout row {heading}: {sorted(modules - listed)}"
    assert set(rooms["course_lib"]) == set(course_lib._SUBMODULES), (
        f"lazy loader differs from course_lib/: {sorted(set(rooms['course_lib']) ^ set(course_lib._SUBMODULES))}")
    assert not set(rooms["course_lib"]) & set(rooms["course_lib.tools"]), "a module name in both rooms"


def test_tab_completion_offers_the_learners_modules_only():
    import course_lib
    import course_lib.tools.cli  # noqa: F401 - imported, the machinery still stays out of dir(cl)

    names = set(dir(course_lib))
    assert set(course_lib._SUBMODULES) | {"setup"} <= names
    machinery = set(_rooms()["course_lib.tools"]) | {"tools"}
    assert not names & machinery, f"dir(course_lib) offers the machinery: {sorted(names & machinery)}"


def _course_imports(path):
    """course_lib modules a module imports anywhere in its code, as dotted names ("data", "tools.runner")."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in ("course_lib", "course_lib.tools"):
            prefix = node.module.removeprefix("course_lib").lstrip(".")
            found |= {f"{prefix}.{a.name}".lstrip(".") for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib."):
            found.add(node.module.removeprefix("course_lib."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("course_lib.") for a in node.names if a.name.startswith("course_lib.")}
    return found - {"_data"}


def _graph():
    """Dotted module name -> the course modules it imports, over both rooms."""
    return {(stem if room == "course_lib" else f"tools.{stem}"): _course_imports(path)
            for room, modules in _rooms().items() for stem, path in modules.items()}


def test_the_module_graph_has_no_cycle():
    graph = _graph()
    done, cycles = set(), []

    def visit(node, path):
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    assert graph["config"] == set(), f"config must import no course module; it imports {graph['config']}"
    assert all(name in graph for deps in graph.values() for name in deps), "an import of a module that is not there"


def test_the_library_never_imports_the_machinery():
    graph = _graph()
    wrong = {m: sorted(d for d in deps if d.startswith("tools")) for m, deps in graph.items() if not m.startswith("tools")}
    wrong = {m: deps for m, deps in wrong.items() if deps}
    assert not wrong, f"learners' modules import course_lib.tools (arrows run from tools to the library only): {wrong}"


def test_importing_config_loads_no_other_course_module():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import course_lib.config"],
                         capture_output=True, text=True, check=True).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.splitlines()}
    loaded = {name for name in loaded if name.split(".")[0] == "course_lib"}
    assert loaded == {"course_lib", "course_lib.config"}, loaded


def test_long_signatures_are_keyword_only_after_the_first_two():
    import ast

    long = []
    for modules in _rooms().values():
        for path in modules.values():
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.args.vararg:
                    positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                    if len(positional) + len(node.args.kwonlyargs) > 4 and len(positional) > 2:
                        long.append(f"{path.parent.name}/{path.name}:{node.lineno} {node.name}({', '.join(positional)}, ...)")
    assert not long, ("functions with more than four parameters take at most two positionally; put `*,` after "
                      "the second: " + "; ".join(long))


def test_every_module_lists_its_public_names_in_all():
    import ast

    wrong = {}
    for modules in _rooms().values():
        for path in modules.values():
            tree = ast.parse(path.read_text())
            public = {n.name for n in tree.body
                      if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")}
            public |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                       if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_")}
            listed = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                      and any(getattr(t, "id", "") == "__all__" for t in n.targets)]
            if not listed or set(listed[0]) != public:
                wrong[path.name] = sorted(public ^ set(listed[0])) if listed else "no __all__"
    assert not wrong, f"__all__ differs from the public functions, classes and CONSTANTS: {wrong}"
