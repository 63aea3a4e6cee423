#!/usr/bin/env bash
# `make test`: checks and the test suite; with E2E=1 (what CI sets) also the three images and the
# chart's containers end to end (`make e2e`), after the evaluator's tests inside the evaluator image.
#
# The image builds run in the background from the start, beside set-up, lint and pytest: they wait on
# downloads and disk far more than on the CPU, and pytest keeps one core busy. Their output goes to
# $IMAGES_LOG (default build/images.log); a failed build prints the end of it (buildah's and the
# container's own error) and fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
make=${MAKE:-make}
log=${IMAGES_LOG:-build/images.log}
images=
if [ "${E2E:-}" = 1 ]; then
  mkdir -p "$(dirname "$log")"
  echo "make test: building the images in the background (log: $log)"
  setsid bash scripts/build_images.sh >"$log" 2>&1 &
  images=$!
fi
# setsid: the builds get a process group of their own, so an early exit stops buildah too.
stop_images() { [ -z "$images" ] || kill -- "-$images" 2>/dev/null || true; }
trap stop_images EXIT

$make setup sysdeps lint typecheck importlint deadcode deps || exit $?
"${VENV:-.venv}/bin/pytest" -q
rc=$?
# pytest's 5 (no test collected) is a failure here too: the suite is never meant to be empty.
[ "$rc" -eq 0 ] || { echo "make test: pytest exited $rc" >&2; exit "$rc"; }

if [ -z "$images" ]; then
  echo "make test: images and e2e skipped (E2E=1 runs them)"
  exit 0
fi
start=$(date +%s)
wait "$images"
rc=$?
images=
if [ "$rc" -ne 0 ]; then
  echo "make test: the image build failed (exit $rc); the end of $log:" >&2
  tail -n 80 "$log" >&2
  exit "$rc"
fi
grep '^build_images:' "$log"
echo "make test: waited $(( $(date +%s) - start )) s for the images after pytest"
# The evaluator's tests against the packages its image ships (vLLM's numpy, fastapi, transformers).
bash scripts/test_in_image.sh evaluator tests/evaluator -k "not chromium" || exit $?
exec "${VENV:-.venv}/bin/python" scripts/e2e.py
