#!/bin/sh
# Deploy step: record the release's currently deployed revision before upgrading,
# so a failed upgrade can be rolled back to exactly that revision (not merely "the
# one before the last", which is wrong if the last attempt itself was a failure).
#
# Environment: RELEASE, NAMESPACE.
# Output: $OUTPUT_DIR/revision: the deployed revision, or 0 when the release does
# not exist yet (first install: there is nothing to roll back to).
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE
require_cmd helm jq

if ! history=$(helm history "$RELEASE" --namespace "$NAMESPACE" --max 50 --output json 2>/dev/null); then
    log "release $RELEASE not found in $NAMESPACE: first install"
    write_output revision 0
    echo 0
    exit 0
fi

pending=$(printf '%s' "$history" | jq -r '[.[] | select(.status | startswith("pending"))] | length')
if [ "$pending" != "0" ]; then
    die "release $RELEASE has an operation in a pending state; resolve it first (see docs/cicd.md, 'Stuck release')"
fi

revision=$(printf '%s' "$history" | jq -r '[.[] | select(.status == "deployed")] | last | .revision // 0')
log "release $RELEASE: deployed revision $revision"
write_output revision "$revision"
echo "$revision"
