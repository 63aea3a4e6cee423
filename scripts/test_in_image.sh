#!/usr/bin/env bash
# Run tests inside a built image, against the packages it ships (e.g. the evaluator's, whose numpy
# and fastapi are vLLM's, not our pins):   scripts/test_in_image.sh evaluator tests/evaluator
# The package under test is the image's installed synthtune; the repository is mounted read-only
# for the tests themselves, ../shared (the data sets) at /shared. pytest is added to a throwaway container
# (as root, host network for PyPI). Tests that drive a browser need chromium, which no image ships:
#   scripts/test_in_image.sh evaluator tests/evaluator -k "not chromium"
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: test_in_image.sh IMAGE-NAME TEST-PATH...}; shift
image=${IMAGE_PREFIX:-localhost}/synthtune-$name:${IMAGE_TAG:-dev}
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=(docker run)
else
  engine=("${STANDIN:-../shared/tools/standin-base.sh}" run)
fi
shared=()
[ ! -d ../shared ] || shared=(-v "$(readlink -f ../shared):/shared:ro")
args=$(printf ' %q' "$@")   # quoted again for the container's shell
# The test tools, at our pins (moto's S3 server for the store tests); the image's own numpy and fastapi
# (vLLM's) are left as they are.
tools="pytest pytest-timeout pytest-asyncio 'moto[server]'"
exec "${engine[@]}" --rm --network host --user 0 --entrypoint sh -v "$PWD:/src:ro" "${shared[@]}" -w /src \
  -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt -e HOME=/tmp "$image" -c \
  "grep -vE '^(numpy|fastapi)==' requirements-pins.txt > /tmp/pins.txt && pip install -q --no-cache-dir -c /tmp/pins.txt $tools && python -m pytest -q -p no:cacheprovider$args"
