#!/bin/sh
# Build step: build the worker image with buildx and push <image>:<tag> to Harbor.
#
# Runs in docker:27-cli next to a privileged docker:27-dind sidecar. The builder
# uses the docker-container driver (a BuildKit container inside dind) because the
# plain docker driver cannot export a local cache with mode=max. The cache lives on
# a node-pinned PVC mounted at $CACHE_DIR; it is written to a fresh directory and
# swapped in afterwards, because buildx's local exporter never prunes and a cache
# written in place grows without bound.
#
# Environment:
#   SRC_DIR              checkout of the worker repository (build context root)
#   IMAGE                <registry>/temporal-worker
#   TAG                  the commit sha
#   DOCKERFILE           path relative to SRC_DIR (deploy/docker/Dockerfile)
#   PLATFORM             linux/amd64
#   CACHE_DIR            mount point of the buildx cache PVC
#   REGISTRY_AUTH_FILE   mounted .dockerconfigjson of harbor-credentials
#   REPO_URL             recorded as an OCI label
# Outputs: $OUTPUT_DIR/digest (sha256:...) and $OUTPUT_DIR/image (<image>@<digest>).
# The digest is read from buildx's --metadata-file ("containerimage.digest"); a build
# that leaves no such digest fails the step, even if buildx itself exited 0.
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env IMAGE TAG REGISTRY_AUTH_FILE
SRC_DIR=${SRC_DIR:-/src}
DOCKERFILE=${DOCKERFILE:-deploy/docker/Dockerfile}
PLATFORM=${PLATFORM:-linux/amd64}
CACHE_DIR=${CACHE_DIR:-/buildx-cache}
BUILDER=${BUILDER:-temporal-worker}
REPO_URL=${REPO_URL:-unknown}
export DOCKER_CONFIG="${DOCKER_CONFIG:-/tmp/docker-config}"

require_cmd docker
[ -f "$SRC_DIR/$DOCKERFILE" ] || die "Dockerfile not found: $SRC_DIR/$DOCKERFILE"
[ -r "$REGISTRY_AUTH_FILE" ] || die "registry credentials not readable: $REGISTRY_AUTH_FILE"

# The secret mount is read-only; buildx needs a writable DOCKER_CONFIG.
mkdir -p "$DOCKER_CONFIG"
cp "$REGISTRY_AUTH_FILE" "$DOCKER_CONFIG/config.json"
chmod 600 "$DOCKER_CONFIG/config.json"

log "waiting for the dind sidecar at ${DOCKER_HOST:-<default>}"
retry 8 1 docker info >/dev/null 2>&1 || die "docker daemon in the dind sidecar did not start"

if ! docker buildx inspect "$BUILDER" >/dev/null 2>&1; then
    docker buildx create --name "$BUILDER" --driver docker-container \
        --driver-opt network=host --bootstrap
fi

mkdir -p "$CACHE_DIR"
cache_from=""
if [ -f "$CACHE_DIR/current/index.json" ]; then
    cache_from="--cache-from=type=local,src=$CACHE_DIR/current"
else
    log "no buildx cache yet at $CACHE_DIR/current: cold build"
fi
rm -rf "$CACHE_DIR/next"
metadata=$(mktemp "${TMPDIR:-/tmp}/buildx-metadata.XXXXXX")
rm -f "$metadata"

log "building $IMAGE:$TAG for $PLATFORM"
# cache_from is empty or exactly one argument.
# shellcheck disable=SC2086
docker buildx build \
    --builder "$BUILDER" \
    --platform "$PLATFORM" \
    --file "$SRC_DIR/$DOCKERFILE" \
    --build-arg "BUILD_ID=$TAG" \
    --label "org.opencontainers.image.revision=$TAG" \
    --label "org.opencontainers.image.source=$REPO_URL" \
    $cache_from \
    --cache-to "type=local,dest=$CACHE_DIR/next,mode=max" \
    --provenance=false \
    --metadata-file "$metadata" \
    --tag "$IMAGE:$TAG" \
    --push \
    "$SRC_DIR" \
    || die "docker buildx build of $IMAGE:$TAG failed"

[ -s "$metadata" ] || die "buildx wrote no metadata file: the pushed digest is unknown"
# No jq in docker:cli; the key is unique ("containerimage.config.digest" and the
# descriptor's "digest" do not match this pattern).
digest=$(sed -n 's/.*"containerimage\.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$metadata")
is_digest "$digest" || die "could not read the pushed image digest from buildx metadata: $(cat "$metadata")"

if [ -d "$CACHE_DIR/next" ]; then
    rm -rf "$CACHE_DIR/current"
    mv "$CACHE_DIR/next" "$CACHE_DIR/current"
else
    log "warning: buildx exported no cache to $CACHE_DIR/next; keeping the previous cache"
fi

write_output digest "$digest"
write_output image "$IMAGE@$digest"
log "pushed $IMAGE:$TAG as $digest"
