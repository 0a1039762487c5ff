#!/bin/sh
# Build step: scan the pushed image by digest with trivy and fail on findings at
# or above $SEVERITY. Scanning the digest (not the tag) guarantees the bytes that
# were scanned are the bytes that get promoted and deployed.
#
# trivy exits 1 on its own errors too (image not pullable, DB missing, auth). So
# findings get their own exit code (FINDINGS_EXIT): 0 is "scanned, clean", that code
# is "scanned, findings", and anything else is "not scanned": the step fails with a
# message that says which.
#
# Environment:
#   IMAGE_REF            <image>@sha256:... (a tag is refused: scan the digest)
#   SEVERITY             CRITICAL (comma list accepted by trivy)
#   IGNORE_UNFIXED       true: findings without a fixed version do not fail the build
#   REGISTRY_AUTH_FILE   mounted .dockerconfigjson (trivy reads DOCKER_CONFIG)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env IMAGE_REF REGISTRY_AUTH_FILE
is_digest "${IMAGE_REF##*@}" || die "IMAGE_REF must name a digest, <image>@sha256:... (got '$IMAGE_REF')"
FINDINGS_EXIT=3
SEVERITY=${SEVERITY:-CRITICAL}
IGNORE_UNFIXED=${IGNORE_UNFIXED:-true}
export DOCKER_CONFIG="${DOCKER_CONFIG:-/tmp/docker-config}"
export TRIVY_CACHE_DIR="${TRIVY_CACHE_DIR:-/tmp/trivy-cache}"

require_cmd trivy
mkdir -p "$DOCKER_CONFIG" "$TRIVY_CACHE_DIR"
cp "$REGISTRY_AUTH_FILE" "$DOCKER_CONFIG/config.json"

unfixed=""
if is_true "$IGNORE_UNFIXED"; then
    unfixed="--ignore-unfixed"
fi

# The vulnerability DB download is the flaky part; the scan itself is deterministic.
retry 3 10 trivy image --download-db-only --no-progress \
    || die "trivy could not download its vulnerability database: the image was not scanned"

log "scanning $IMAGE_REF (fail on $SEVERITY)"
rc=0
# unfixed is empty or exactly one flag.
# shellcheck disable=SC2086
trivy image --skip-db-update --no-progress --scanners vuln \
    --severity "$SEVERITY" $unfixed --exit-code "$FINDINGS_EXIT" "$IMAGE_REF" || rc=$?
case "$rc" in
    0) log "no $SEVERITY findings in $IMAGE_REF" ;;
    "$FINDINGS_EXIT") die "$IMAGE_REF has $SEVERITY findings (listed above)" ;;
    *) die "trivy failed (exit $rc): $IMAGE_REF was NOT scanned" ;;
esac
