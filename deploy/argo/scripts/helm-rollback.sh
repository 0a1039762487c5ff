#!/bin/sh
# Deploy/rollback step: roll the release back and wait for it.
#
# Environment:
#   RELEASE, NAMESPACE
#   REVISION        the revision to return to:
#                     <n> (1, 2, ...)   that revision (the deploy records it first)
#                     previous or ""    the revision before the current one
#                     0                 "no deployed revision was recorded" (what
#                                       helm-current-revision.sh reports for a first
#                                       install): there is nothing to roll back to; the
#                                       step says so and fails without touching helm.
#                                       (helm itself reads 0 as "previous"; that
#                                       meaning is deliberately not taken over.)
#   HELM_TIMEOUT    how long --wait may take (10m)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE
require_cmd helm
REVISION=${REVISION:-previous}
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}

case "$REVISION" in
    previous) target="" ;;
    0) die "no deployed revision was recorded for $RELEASE (first install): nothing to roll back to, not rolling back" ;;
    *[!0-9]*) die "revision must be a number or 'previous' (got '$REVISION')" ;;
    *) target=$REVISION ;;
esac

errors=$(stderr_file)
trap 'rm -f "$errors"' EXIT
if ! helm status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>"$errors"; then
    if grep -q 'release: not found' "$errors"; then
        die "release $RELEASE not found in $NAMESPACE: nothing to roll back"
    fi
    cat "$errors" >&2
    die "helm status $RELEASE failed (see above): not rolling back blind"
fi

log "rolling $RELEASE back to ${target:+revision }${target:-the previous revision}"
# target is empty (helm's "previous") or one number.
# shellcheck disable=SC2086
helm rollback "$RELEASE" $target \
    --namespace "$NAMESPACE" \
    --wait \
    --timeout "$HELM_TIMEOUT" \
    --cleanup-on-fail \
    || die "helm rollback of $RELEASE to ${target:-the previous revision} failed"

# Informational only: the rollback itself has succeeded at this point.
helm history "$RELEASE" --namespace "$NAMESPACE" --max 3 >&2 \
    || log "warning: helm history $RELEASE failed after a successful rollback"
