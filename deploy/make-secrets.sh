#!/bin/sh
# Makes the Secrets the manifests in deploy/ refer to, in NAMESPACE (created if need
# be), with fresh random API keys; a Secret that exists already is left as it is.
#
#   deploy/make-secrets.sh NAMESPACE [--without-service-keys]
#
#   modelplane-admin-key     admin.key: the bootstrap admin key the registry stores. A
#                            copy goes to ./modelplane-admin.key (mode 0600) for the CLI
#                            (`--api-key-file`), unless that file exists: then its key
#                            is the one used.
#   modelplane-service-keys  trainer.key, worker.key, router.key: the keys the services
#                            present (dev overlay and base; the production overlay uses
#                            certificates instead: --without-service-keys).
#   modelplane-s3            the registry's bucket settings, from AWS_ACCESS_KEY_ID,
#                            AWS_SECRET_ACCESS_KEY, AWS_REGION and optionally
#                            AWS_ENDPOINT, AWS_ALLOW_HTTP, AWS_SESSION_TOKEN in this
#                            shell's environment (skipped when AWS_ACCESS_KEY_ID is unset).
#
# Needs kubectl and openssl. Keys never appear on a command line: they go through files
# in a private temporary directory.
set -eu

usage() { echo "usage: $0 NAMESPACE [--without-service-keys]" >&2; exit 2; }
[ $# -ge 1 ] || usage
namespace=$1
shift
service_keys=yes
for arg in "$@"; do
  case $arg in
    --without-service-keys) service_keys=no ;;
    *) usage ;;
  esac
done

for tool in kubectl openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$0: $tool not found" >&2; exit 1; }
done

# A modelplane API key: mpk_<16 hex digits of id>_<64 hex digits of secret>.
new_key() { printf 'mpk_%s_%s\n' "$(openssl rand -hex 8)" "$(openssl rand -hex 32)"; }

exists() { kubectl -n "$namespace" get secret "$1" >/dev/null 2>&1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
chmod 700 "$work"

kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"

if exists modelplane-admin-key; then
  echo "modelplane-admin-key exists; kept"
else
  admin=./modelplane-admin.key
  if [ ! -f "$admin" ]; then
    (umask 077 && new_key > "$admin")
    echo "wrote the admin key to $admin (keep it; it is the CLI's --api-key-file)"
  fi
  kubectl -n "$namespace" create secret generic modelplane-admin-key --from-file=admin.key="$admin"
fi

if [ "$service_keys" = yes ]; then
  if exists modelplane-service-keys; then
    echo "modelplane-service-keys exists; kept"
  else
    for role in trainer worker router; do
      (umask 077 && new_key > "$work/$role.key")
    done
    kubectl -n "$namespace" create secret generic modelplane-service-keys \
      --from-file=trainer.key="$work/trainer.key" \
      --from-file=worker.key="$work/worker.key" \
      --from-file=router.key="$work/router.key"
  fi
fi

if exists modelplane-s3; then
  echo "modelplane-s3 exists; kept"
elif [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
  env_file="$work/s3.env"
  (umask 077 && : > "$env_file")
  for name in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_ENDPOINT AWS_ALLOW_HTTP; do
    eval "value=\${$name:-}"
    [ -z "$value" ] || printf '%s=%s\n' "$name" "$value" >> "$env_file"
  done
  kubectl -n "$namespace" create secret generic modelplane-s3 --from-env-file="$env_file"
else
  echo "modelplane-s3 not made (AWS_ACCESS_KEY_ID is unset); the dev overlay needs none"
fi
