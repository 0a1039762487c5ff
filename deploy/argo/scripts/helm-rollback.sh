#!/bin/sh
# Deploy/rollback step: roll the release back and wait for it.
#
# Environment:
#   RELEASE, NAMESPACE
#   REVISION        target revision; empty or 0 means "the previous revision"
#                   (helm's own meaning of 0)
#   HELM_TIMEOUT    how long --wait may take (10m)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE
require_cmd helm
REVISION=${REVISION:-0}
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}

case "$REVISION" in
    '' | *[!0-9]*) die "revision must be a number (got '$REVISION')" ;;
esac

helm status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>&1 \
    || die "release $RELEASE not found in $NAMESPACE: nothing to roll back"

if [ "$REVISION" = "0" ]; then
    log "rolling $RELEASE back to the previous revision"
else
    log "rolling $RELEASE back to revision $REVISION"
fi
helm rollback "$RELEASE" "$REVISION" \
    --namespace "$NAMESPACE" \
    --wait \
    --timeout "$HELM_TIMEOUT" \
    --cleanup-on-fail

helm history "$RELEASE" --namespace "$NAMESPACE" --max 3 >&2
