#!/bin/sh
# Promotion gate: succeed only if a verified staging deploy of this exact image
# digest is on record. temporal-worker-deploy runs it before helm for every
# environment other than staging; the composite pipeline runs it in lookup mode
# to find the digest to promote.
#
# The record is a ConfigMap written by record-staging-verified.sh after a staging
# deploy passed verification (rollout, pods, /readyz, healthCheckWorkflow):
#   <RECORD_PREFIX>-<64 hex digits of the digest>, label <TAG_LABEL>=<image tag>,
#   data.digest = sha256:...
#
# Two modes:
#   DIGEST set      check that digest: exit 0 if verified in staging, 1 if not.
#   DIGEST empty    lookup: IMAGE_TAG must be set; the newest staging-verified
#                   digest of that tag is written to $OUTPUT_DIR/digest (exit 0),
#                   or exit 1 if that tag was never verified.
# Anything else (kubectl cannot reach the API, RBAC, malformed answer) exits 2:
# an unreadable record is never taken as "verified".
#
# Environment:
#   DIGEST            sha256:<64 hex> to check (check mode)
#   IMAGE_TAG         image tag (the worker commit sha) to look up (lookup mode)
#   RECORD_NAMESPACE  namespace of the records (default argo)
#   RECORD_PREFIX     record name prefix (default temporal-worker-staging-verified)
#   OUTPUT_DIR        where lookup mode writes `digest` (default /tmp/outputs)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

DIGEST=${DIGEST:-}
IMAGE_TAG=${IMAGE_TAG:-}
RECORD_NAMESPACE=${RECORD_NAMESPACE:-argo}
RECORD_PREFIX=${RECORD_PREFIX:-temporal-worker-staging-verified}
TAG_LABEL=temporal-worker.nineminds.com/staging-verified-tag

require_cmd kubectl

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

# sha256:<64 lowercase hex>, nothing else.
well_formed_digest() {
    matches 'sha256:[0-9a-f]{64}' "$1"
}

errors=$(mktemp "${TMPDIR:-/tmp}/check-staging-verified.XXXXXX")
trap 'rm -f "$errors"' EXIT

if [ -n "$DIGEST" ]; then
    well_formed_digest "$DIGEST" || die "DIGEST must be sha256:<64 hex digits> (got '$DIGEST')"
    name="$RECORD_PREFIX-${DIGEST#sha256:}"
    if ! recorded=$(kubectl get configmap "$name" --namespace "$RECORD_NAMESPACE" \
        --output 'jsonpath={.data.digest}' 2>"$errors"); then
        if grep -q 'NotFound' "$errors"; then
            log "REFUSED: no verified staging deploy of $DIGEST (no record $RECORD_NAMESPACE/$name)."
            log "Deploy this digest with environment=staging first; the record is written after verification."
            exit 1
        fi
        log "ERROR: cannot read the staging record $RECORD_NAMESPACE/$name:"
        cat "$errors" >&2
        exit 2
    fi
    if [ "$recorded" != "$DIGEST" ]; then
        log "REFUSED: record $RECORD_NAMESPACE/$name holds digest '$recorded', not $DIGEST"
        exit 1
    fi
    log "staging verified $DIGEST (record $RECORD_NAMESPACE/$name)"
    exit 0
fi

# Lookup mode.
[ -n "$IMAGE_TAG" ] || die "set DIGEST (check) or IMAGE_TAG (lookup)"
matches '[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}' "$IMAGE_TAG" \
    || die "IMAGE_TAG is not a valid label value: '$IMAGE_TAG'"
if ! listing=$(kubectl get configmaps --namespace "$RECORD_NAMESPACE" \
    --selector "$TAG_LABEL=$IMAGE_TAG" --sort-by .metadata.creationTimestamp \
    --output 'jsonpath={range .items[*]}{.data.digest}{"\n"}{end}' 2>"$errors"); then
    log "ERROR: cannot list staging records in $RECORD_NAMESPACE:"
    cat "$errors" >&2
    exit 2
fi
# Oldest first (--sort-by): the last line is the newest verification of this tag.
newest=$(printf '%s\n' "$listing" | sed '/^$/d' | tail -n 1)
if [ -z "$newest" ]; then
    log "REFUSED: image tag $IMAGE_TAG has no verified staging deploy; deploy it to staging first."
    exit 1
fi
well_formed_digest "$newest" || { log "ERROR: malformed digest in a staging record: '$newest'"; exit 2; }
log "newest staging-verified digest of $IMAGE_TAG: $newest"
write_output digest "$newest"
