#!/bin/sh
# Record that a staging deploy of an image digest passed verification, so that
# check-staging-verified.sh lets the same digest be promoted to hosted.
#
# temporal-worker-deploy runs this only for environment=staging and only after
# its verify step succeeded. As a last check the script reads the staging
# Deployment back: the record is written only if its worker container runs
# exactly <repository>@DIGEST (or <repository>:<tag>@DIGEST). Any error (kubectl,
# mismatch) exits non-zero without writing.
#
# The record: ConfigMap <RECORD_PREFIX>-<64 hex> in RECORD_NAMESPACE, labelled
# with the image tag, data: digest, image, tag, release, namespace, verified-at,
# workflow. Applied with kubectl apply, so re-verifying a digest refreshes it.
#
# Environment:
#   DIGEST, IMAGE_REPOSITORY, IMAGE_TAG   the deployed image (digest: sha256:<64 hex>)
#   NAMESPACE, DEPLOYMENT, RELEASE        the staging deployment that was verified
#   RECORD_NAMESPACE                      namespace of the records (default argo)
#   RECORD_PREFIX                         record name prefix (default temporal-worker-staging-verified)
#   WORKFLOW_NAME                         the recording workflow (informational)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env DIGEST IMAGE_REPOSITORY IMAGE_TAG NAMESPACE DEPLOYMENT RELEASE
require_cmd kubectl
RECORD_NAMESPACE=${RECORD_NAMESPACE:-argo}
RECORD_PREFIX=${RECORD_PREFIX:-temporal-worker-staging-verified}
WORKFLOW_NAME=${WORKFLOW_NAME:-unknown}
TAG_LABEL=temporal-worker.nineminds.com/staging-verified-tag

# matches <extended-regex> <value>: the whole value is one line matching the regex
# (grep -x alone would accept a value with a matching line and more lines after it).
matches() {
    case "$2" in
        *"$NL"*) return 1 ;;
    esac
    printf '%s\n' "$2" | grep -Eqx "$1"
}
NL='
'

matches 'sha256:[0-9a-f]{64}' "$DIGEST" \
    || die "DIGEST must be sha256:<64 hex digits> (got '$DIGEST')"
matches '[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}' "$IMAGE_TAG" \
    || die "IMAGE_TAG is not a valid label value: '$IMAGE_TAG'"
# Every value goes into a double-quoted YAML scalar: allow only characters that
# need no escaping there.
for value in "$IMAGE_REPOSITORY" "$NAMESPACE" "$DEPLOYMENT" "$RELEASE" "$RECORD_NAMESPACE" "$WORKFLOW_NAME"; do
    matches '[A-Za-z0-9_.:/@-]+' "$value" || die "unexpected characters in '$value'"
done

image=$(kubectl get deployment "$DEPLOYMENT" --namespace "$NAMESPACE" \
    --output 'jsonpath={.spec.template.spec.containers[0].image}') \
    || die "cannot read deployment $NAMESPACE/$DEPLOYMENT"
case "$image" in
    "$IMAGE_REPOSITORY@$DIGEST" | "$IMAGE_REPOSITORY:$IMAGE_TAG@$DIGEST") ;;
    *) die "deployment $NAMESPACE/$DEPLOYMENT runs '$image', not $IMAGE_REPOSITORY@$DIGEST: not recording" ;;
esac

name="$RECORD_PREFIX-${DIGEST#sha256:}"
manifest=$(mktemp "${TMPDIR:-/tmp}/staging-record.XXXXXX")
trap 'rm -f "$manifest"' EXIT
cat >"$manifest" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: "$name"
  namespace: "$RECORD_NAMESPACE"
  labels:
    app.kubernetes.io/part-of: temporal-worker-py
    app.kubernetes.io/component: staging-verification
    $TAG_LABEL: "$IMAGE_TAG"
data:
  digest: "$DIGEST"
  image: "$IMAGE_REPOSITORY:$IMAGE_TAG@$DIGEST"
  tag: "$IMAGE_TAG"
  release: "$RELEASE"
  namespace: "$NAMESPACE"
  verified-at: "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  workflow: "$WORKFLOW_NAME"
EOF

kubectl apply --filename "$manifest" >&2 || die "cannot write the staging record $RECORD_NAMESPACE/$name"
log "recorded: $IMAGE_REPOSITORY@$DIGEST verified in staging ($NAMESPACE/$RELEASE) as $RECORD_NAMESPACE/$name"
