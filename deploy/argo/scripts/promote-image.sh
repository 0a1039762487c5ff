#!/bin/sh
# Build step, after the scan passed: add the optional extra references.
#   - <image>:latest in Harbor when SET_LATEST is true
#   - <ghcr-image>:<tag> (and :latest) when PUSH_GHCR is true
# Copies the scanned manifest by digest with `buildx imagetools create`, so no
# rebuild happens and "latest" never points at an unscanned image.
#
# Environment: IMAGE, TAG, DIGEST, SET_LATEST, PUSH_GHCR, GHCR_IMAGE,
#   REGISTRY_AUTH_FILE, GHCR_USERNAME/GHCR_TOKEN (from an optional secret).
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env IMAGE TAG DIGEST REGISTRY_AUTH_FILE
is_digest "$DIGEST" || die "DIGEST must be the scanned image's sha256:<64 hex digits> (got '$DIGEST')"
SET_LATEST=${SET_LATEST:-false}
PUSH_GHCR=${PUSH_GHCR:-false}
export DOCKER_CONFIG="${DOCKER_CONFIG:-/tmp/docker-config}"

require_cmd docker
mkdir -p "$DOCKER_CONFIG"
cp "$REGISTRY_AUTH_FILE" "$DOCKER_CONFIG/config.json"
chmod 600 "$DOCKER_CONFIG/config.json"
retry 8 1 docker info >/dev/null 2>&1 || die "docker daemon in the dind sidecar did not start"

source_ref="$IMAGE@$DIGEST"

if is_true "$SET_LATEST"; then
    log "tagging $source_ref as $IMAGE:latest"
    retry 3 5 docker buildx imagetools create --tag "$IMAGE:latest" "$source_ref" \
        || die "could not tag $source_ref as $IMAGE:latest"
fi

if is_true "$PUSH_GHCR"; then
    require_env GHCR_IMAGE GHCR_USERNAME GHCR_TOKEN
    printf '%s' "$GHCR_TOKEN" | docker login ghcr.io --username "$GHCR_USERNAME" --password-stdin \
        || die "docker login to ghcr.io failed"
    log "copying $source_ref to $GHCR_IMAGE:$TAG"
    retry 3 5 docker buildx imagetools create --tag "$GHCR_IMAGE:$TAG" "$source_ref" \
        || die "could not copy $source_ref to $GHCR_IMAGE:$TAG"
    if is_true "$SET_LATEST"; then
        retry 3 5 docker buildx imagetools create --tag "$GHCR_IMAGE:latest" "$source_ref" \
            || die "could not copy $source_ref to $GHCR_IMAGE:latest"
    fi
fi

if ! is_true "$SET_LATEST" && ! is_true "$PUSH_GHCR"; then
    log "nothing to promote (set-latest=false, push-ghcr=false)"
fi
