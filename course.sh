#!/usr/bin/env bash
# One entry point for a fresh machine (see README):
#   ./course.sh run    install into .venv, then execute every notebook (fast profile) and write a run report
#   ./course.sh test   install with the test extras, then run the whole test suite (unit tests + the student notebooks, executed)
#   ./course.sh site   install with the site extra, then build build/site/ (a static website) from runs/latest
#   ./course.sh <any other `course` sub-command>   e.g. ./course.sh mirror check
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${COURSE_VENV:-.venv}"

ensure_venv() {  # $1: pip extras ("" or "[test]")
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; v=sys.version_info[:2]; sys.exit(0 if (3,10)<=v<=(3,12) else "The course needs Python 3.10 to 3.12. Received: %d.%d. Set PYTHON=/path/to/python3.11." % v)'
    echo "[course.sh] creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.course-installed$1"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[course.sh] installing the course into $VENV (first time: a few minutes)"
    # pip's own notes (setuptools' editable-install banner, index warnings) go to a log, shown on failure
    # uv, when it is on PATH, installs the same packages in about a third of pip's time (COURSE_NO_UV=1: pip)
    local log="$VENV/pip-install.log"
    if command -v uv >/dev/null 2>&1 && [ -z "${COURSE_NO_UV:-}" ]; then
      if ! uv pip install -q --python "$VENV/bin/python" --compile-bytecode -e ".$1" >"$log" 2>&1; then
        cat "$log"; echo "[course.sh] uv pip install failed (above; full log: $log; COURSE_NO_UV=1 uses pip)"; exit 1
      fi
    elif ! { "$VENV/bin/python" -m pip install -q --upgrade pip || true; "$VENV/bin/python" -m pip install -q -e ".$1"; } >"$log" 2>&1; then
      grep -v "^WARNING: Location" "$log"; echo "[course.sh] pip install failed (above; full log: $log)"; exit 1
    fi
    # fail here if the install failed; TensorFlow's start-up lines are shown only then
    if ! out=$("$VENV/bin/python" -c "import course_lib, tensorflow, keras" 2>&1); then
      echo "$out"; echo "[course.sh] the install is broken (see above); delete $VENV and run again"; exit 1
    fi
    touch "$stamp"
  fi
}

cmd="${1:-run}"; shift || true
case "$cmd" in
  run)  ensure_venv ""; exec "$VENV/bin/course" run "$@" ;;
  test) ensure_venv "[test]"; exec "$VENV/bin/python" -m pytest "$@" ;;
  site) ensure_venv "[site]"; exec "$VENV/bin/course" site "$@" ;;
  *)    ensure_venv ""; exec "$VENV/bin/course" "$cmd" "$@" ;;
esac
