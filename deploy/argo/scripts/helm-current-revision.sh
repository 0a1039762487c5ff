#!/bin/sh
# Deploy step: record the release's currently deployed revision before upgrading,
# so a failed upgrade can be rolled back to exactly that revision (not merely "the
# one before the last", which is wrong if the last attempt itself was a failure).
#
# Environment: RELEASE, NAMESPACE.
# Output: $OUTPUT_DIR/revision: the deployed revision, or 0 when there is nothing
# to roll back to: the release does not exist (helm answers exactly "release: not
# found"), or it exists without a deployed revision (its first install failed).
#
# Any other helm failure (API server unreachable, RBAC forbidden, broken release
# storage) fails the step with helm's message. It must never read as "first
# install": that would silently switch the automatic rollback off.
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE
require_cmd helm jq

errors=$(stderr_file)
trap 'rm -f "$errors"' EXIT

if ! history=$(helm history "$RELEASE" --namespace "$NAMESPACE" --max 50 --output json 2>"$errors"); then
    if grep -q 'release: not found' "$errors"; then
        log "release $RELEASE not found in $NAMESPACE: first install, nothing to roll back to"
        write_output revision 0
        echo 0
        exit 0
    fi
    cat "$errors" >&2
    die "helm history $RELEASE failed (see above): cannot tell the deployed revision, refusing to deploy without a rollback target"
fi

pending=$(printf '%s' "$history" | jq -r '[.[] | select(.status | startswith("pending"))] | length') \
    || die "unexpected output from helm history: $history"
if [ "$pending" != "0" ]; then
    die "release $RELEASE has an operation in a pending state; resolve it first (see docs/cicd.md, 'Stuck release')"
fi

revision=$(printf '%s' "$history" | jq -r '[.[] | select(.status == "deployed")] | last | .revision // 0') \
    || die "unexpected output from helm history: $history"
case "$revision" in
    '' | *[!0-9]*) die "unexpected deployed revision '$revision' in helm history" ;;
esac
if [ "$revision" = "0" ]; then
    log "release $RELEASE has no deployed revision (its first install failed?): nothing to roll back to"
else
    log "release $RELEASE: deployed revision $revision"
fi
write_output revision "$revision"
echo "$revision"
