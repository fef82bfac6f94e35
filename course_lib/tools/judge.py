"""The judge: runs an exercise's tests in a process that never runs student code, on the answers as data.

Started by `judge_link` for each graded notebook (`course grade`, in the README's instructor
section), as `python -m course_lib.tools.judge`; the grader and the judge talk in JSON lines
over the judge's stdin and stdout. The grader sends the tests once; at each `grader.check("qN")`
cell, it asks for qN's verdicts. To run a test case the judge needs the answers the test reads
(its free names: `x`, `backbone`; not `np`, `cl`, `keras`, `tf`, `math`, which are the judge's own,
nor `cfg`, the judge's own settings of this profile, as `cl.setup` makes them, without printing):
it asks the grader for each, and the grader has the kernel write it as data (`answers`, `wire`).
A test may also call `answer("splits.class_names")` for one attribute of an answer, and
`in_kernel(cl.data.pipeline, few, 32)` to have the kernel run a course_lib function on its own
objects (a dataset that only lives there). A submitted
function comes as a `Remote`: calling it sends the judge's arguments to the kernel, which calls
the student's function and sends back its result as data.

A test also reads context that the course's own cells compute (`size_table`, `cm`, `CLASSES`,
listed per exercise by `context`): the grader has the judge take each such name right after the
course's unedited cell sets it (`keep`), and the test reads that snapshot, never the name as the
kernel holds it later; when that cell was edited or did not run, the test has nothing to read.

The judge imports TensorFlow when a test first uses it (`keras`, `tf`, a `cl` module other than
`quiz` and `stats`, its own import of one of them, or a model it receives) and seeds it then, as the
case's start would have (`judge_libraries`).

So nothing in the student's kernel (callbacks, AST transformers, rebound names, patched
modules) runs a test, and the tests' text never enters the kernel: only answer names and the
arguments of calls do. What the kernel still decides: the answers and the submitted functions'
results (as it should), the context the course's cells computed there (after the student's
earlier cells, which may have changed what those cells read or call), and what `in_kernel`
builds. A test fails when it raises; a test that cannot read an answer (not defined, raises,
not data) fails too. Only the judge's own failures (it
cannot start or import its libraries, a course resource is missing here) are the grading machine's.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import sys

from course_lib.tools import judge_libraries as libraries, wire

__all__ = ["MACHINE_ERRORS", "StudentError", "Remote", "free_names", "main"]

MACHINE_ERRORS = ("MissingResourceError", "CorruptResourceError")  # course_lib.errors, raised in the judge


class StudentError(Exception):
    """Reading an answer or calling a submitted function failed in the kernel (the student's failure)."""


class Remote:
    """A function of the submission: calling it runs it in the kernel on arguments sent as data."""

    def __init__(self, server, ref: str, name: str):
        self._server, self._ref, self.__name__ = server, ref, name

    def __call__(self, *args, **kwargs):
        return self._server.call(self, args, kwargs)

    def __repr__(self):
        return f"<the submission's function {self.__name__}>"


_BASE_NAMES = ("np", "cl", "keras", "tf", "math", "answer", "cfg", "in_kernel")


def free_names(code: str) -> list[str]:
    """The names a test reads and does not set itself, builtins and the judge's modules aside."""
    tree = ast.parse(code)
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return sorted(loaded - bound - set(dir(builtins)) - set(_BASE_NAMES))


# ---------------------------------------------------------------- the judge process

class _Server:
    """The judge process's state: the tests, the channel to the grader, the answers read so far."""

    def __init__(self, channel_in, channel_out, setup: dict):
        self.inp, self.out = channel_in, channel_out
        self.tests, self.workdir = setup["tests"], setup["workdir"]
        self.count, self.cache, self.origins = 0, {}, {}
        self.kept, self.kept_origins = {}, {}  # context snapshots (`keep`): name -> (ok, value or error)
        self.private = os.getcwd()  # the grader made it for this judge, and removes it

    def send(self, message: dict) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def receive(self) -> dict:
        line = self.inp.readline()
        if not line:
            raise SystemExit(0)  # the grader is gone
        return json.loads(line)

    def _ask(self, message: dict):
        """Ask the grader for an answer file; the decoded tree (StudentError when the kernel failed)."""
        self.send(message)
        reply = self.receive()
        if "error" in reply:
            raise StudentError(str(reply["error"])[:300])
        files = wire.Files(self.workdir, "")
        try:
            return wire.loads(files.read(str(reply.get("file")), wire.MAX_TEXT).decode("utf-8"))
        except (wire.WireError, UnicodeDecodeError, ValueError) as exc:
            raise StudentError(f"the answer could not be read: {exc}") from None

    def _decode(self, tree):
        if libraries.holds_tensorflow(tree):  # imported and seeded here, as for a test, not by the decoder
            libraries.load(self.cfg.seed)
        try:
            return wire.decode(tree, wire.Files(self.workdir, ""), load_model=self._load_model, on_ref=self._origin,
                               functions=lambda t: Remote(self, str(t.get("ref")), str(t.get("name"))[:80]))
        except wire.WireError as exc:
            raise StudentError(f"the answer could not be read: {exc}") from None

    def _origin(self, ref: str, value) -> None:
        """Remember the kernel object an answer came from (it goes back as that object, `call`)."""
        self.origins[id(value)] = (ref, value)  # the value kept alive: its id stays its own

    def keep(self, names: list[str]) -> None:
        """Take these context names as the kernel holds them now, right after the course's cell set them."""
        for name in names:
            self.cache, self.origins = {}, {}
            try:
                self.kept[name] = (True, self.fetch(name))
            except StudentError as exc:
                self.kept[name] = (False, exc)
            except libraries.Unavailable:  # the machine's: the judge ends, the grader reports it
                raise
            except Exception as exc:  # noqa: BLE001 - past the memory limit, say: that answer's failure
                self.kept[name] = (False, StudentError(f"reading `{name}`: {type(exc).__name__}"))
            self.kept_origins[name] = self.origins  # the kernel objects it came from (`call` sends them back)
        self.cache, self.origins = {}, {}

    def context(self, name: str):
        """A context name's value as the course's cell left it (StudentError when that cell did not run unedited)."""
        if name not in self.kept:
            raise StudentError(f"`{name}` is set by the course's own cell, which did not run unedited before this "
                               "exercise: restore that cell from the student notebook and run the notebook again")
        ok, value = self.kept[name]
        if not ok:
            raise value
        return value

    def _load_model(self, data: bytes):
        import keras

        self.count += 1
        path = os.path.join(self.private, f"model-{self.count}.keras")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:  # noqa: BLE001 - a model the judge cannot load is the answer's problem
            raise StudentError(f"the model could not be loaded safely ({type(exc).__name__}: {str(exc)[:200]})")
        finally:
            os.unlink(path)

    def fetch(self, path: str):
        """The answer `path` (a name or `name.attribute`), read once per question."""
        if path not in self.cache:
            try:
                self.cache[path] = (True, self._decode(self._ask({"fetch": path})))
            except StudentError as exc:
                self.cache[path] = (False, StudentError(f"reading `{path}`: {exc}"))
        ok, value = self.cache[path]
        if not ok:
            raise value
        return value

    def call(self, function: Remote, args, kwargs):
        """Call a submitted function in the kernel on these arguments; its result as data."""
        self.count += 1
        files = wire.Files(self.workdir, f"judge-{self.count}")

        def reference(value):
            if isinstance(value, Remote):
                return {"t": "kref", "ref": value._ref}
            raise wire.WireError(f"a test passed a {type(value).__name__} to a submitted function")

        def known(value):  # an answer from the kernel goes back as the kernel's own object
            found = [self.origins] + list(self.kept_origins.values())
            return next((o[id(value)][0] for o in found if id(value) in o), None)

        encode = lambda v: wire.encode(v, files, functions=reference, known=known)  # noqa: E731
        tree = {"args": [encode(a) for a in args], "kwargs": {str(k): encode(v) for k, v in kwargs.items()}}
        request = files.write(".json", wire.dumps(tree).encode("utf-8"))  # no link followed, nothing overwritten
        reply = self._ask({"call": function._ref, "request": request, "name": function.__name__})
        if not isinstance(reply, dict) or "result" not in reply:
            raise StudentError("the call's result could not be read")
        keras = sys.modules.get("keras")  # no model was sent when Keras is not loaded here

        for arg, after in zip(args, reply.get("after") or []):
            if after is not None and keras is not None and isinstance(arg, keras.Model):
                _copy_model_state(self._decode(after), arg)
        return self._decode(reply["result"])

    def in_kernel(self, function, *args, **kwargs):
        """Run a course_lib function in the kernel, on these arguments; its result (kept there as well)."""
        module = getattr(function, "__module__", "") or ""
        if not module.startswith("course_lib") or module.startswith("course_lib.tools"):
            raise TypeError(f"in_kernel runs course_lib's own functions only; got {function!r}")
        return self.call(Remote(self, f"lib:{module}:{function.__qualname__}", function.__name__), args, kwargs)

    def question(self, name: str, context=()) -> list[dict]:
        """Run every case of one exercise; [{"passed", "message", "machine"}]. The names in `context`
        come from the snapshots (`keep`), never from the kernel as it is now."""
        # TensorFlow is imported when a case first uses it, or receives a model (`judge_libraries`)
        import numpy as np

        import math

        self.cache, self.origins = {}, {}
        results = []
        cfg = self.cfg
        for case in self.tests[name]["cases"]:
            lazy = {lib: libraries.Lazy(lib, cfg.seed) for lib in ("cl", "keras", "tf")}
            space = {"np": np, "math": math, "answer": self.fetch, "cfg": cfg, "in_kernel": self.in_kernel,
                     "__name__": "__judge__", **lazy}
            result = {"passed": False, "message": "", "machine": ""}
            try:
                libraries.reseed(cfg.seed)  # TensorFlow's too, when it is loaded (later: `load` seeds it then)
                if libraries.imports_them(case["code"]):  # its own import would load TensorFlow unseeded
                    libraries.load(cfg.seed)
                for free in free_names(case["code"]):
                    space[free] = self.context(free) if free in context else self.fetch(free)
                exec(compile(case["code"], f"<test of {name}>", "exec"), space)  # the course's own tests
                result["passed"] = True
            except StudentError as exc:
                result["message"] = f"the submission's code failed: {exc}"
            except Exception as exc:  # noqa: BLE001 - a failing test is a verdict
                if type(exc).__name__ in MACHINE_ERRORS and type(exc).__module__.startswith("course_lib"):
                    result["machine"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                if isinstance(exc, libraries.Unavailable):
                    result["machine"] = str(exc)
                tf = sys.modules.get("tensorflow")
                if isinstance(exc, MemoryError) or tf is not None and isinstance(exc, tf.errors.ResourceExhaustedError):
                    result["message"] = f"the answer took the judge past its memory limit ({type(exc).__name__})"
                else:
                    result["message"] = f"{type(exc).__name__}: {str(exc)[:300]}" if str(exc) else type(exc).__name__
            results.append(result)
        return results


def _settings():
    """The judge's `cfg`: what `cl.setup` decides in the sandboxed kernel (profile, budget, seed, mirror), silently.
    Both compute on the CPU (the sandbox has no GPU device; `judge_link` hides every GPU from the judge), so
    without COURSE_PROFILE the profile is the CPU's, and TensorFlow need not be imported to find the device."""
    from course_lib import config, mirror, session

    budget = config.get_budget()
    mirror.activate()
    profile = config.get_profile(os.environ.get("COURSE_PROFILE") or config.default_profile_name("cpu"))
    return session.Settings("judge", config.budgeted(profile, budget), config.seed_value(),
                            config.mirror_dir(), config.user_dataset_dir(), "cpu", budget)


def _copy_model_state(source, target) -> None:
    """Give `target` what a submitted function changed in place in `source`'s original: every layer's
    trainable flag (nested models too), the weights, and the optimizer it was compiled with."""
    def walk(mine, theirs):
        mine.trainable = theirs.trainable
        for inner, other in zip(getattr(mine, "layers", []), getattr(theirs, "layers", [])):
            walk(inner, other)

    walk(target, source)
    if len(target.weights) == len(source.weights):
        target.set_weights(source.get_weights())
    optimizer = getattr(source, "optimizer", None)
    if optimizer is not None and getattr(source, "compiled", False):
        target.compile(optimizer=type(optimizer).from_config(optimizer.get_config()), loss=source.loss)


def main() -> int:
    """The judge process: read the tests, import the libraries, then answer the grader's questions."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what tests or libraries print goes to stderr, never into the channel
    sys.stdout = sys.stderr
    setup = json.loads(sys.stdin.readline())
    if setup.get("memory_bytes"):  # an answer that makes the judge allocate more fails its test (MemoryError)
        import resource

        limit = int(setup["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit + libraries.IMPORT_HEADROOM))  # the hard one: `load`'s
    server = _Server(sys.stdin, out, setup)
    try:
        import importlib.util

        server.cfg = _settings()  # the mirror is active before Keras is imported
        import numpy  # noqa: F401 - the judge's own libraries; TensorFlow on first need (`question`)

        import course_lib  # noqa: F401

        missing = [m for m in ("keras", "tensorflow") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"no module named {', '.join(missing)}")
    except Exception as exc:  # noqa: BLE001 - reported to the grader: the machine's fault
        server.send({"machine_error": f"the judge cannot import its libraries ({type(exc).__name__}: {exc})"})
        return 1
    server.send({"ready": True})
    while True:
        message = server.receive()
        if "question" in message:
            server.send({"results": server.question(message["question"], set(message.get("context") or ()))})
        elif "keep" in message:
            server.keep([str(n) for n in message["keep"]])
            server.send({"kept": True})


if __name__ == "__main__":
    sys.exit(main())
