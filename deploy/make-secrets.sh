#!/usr/bin/env bash
# Create the deployment secrets in a folder (git-ignored), once:
#
#   deploy/make-secrets.sh deploy/compose/secrets      # for the compose stack
#   deploy/make-secrets.sh deploy/k8s/base/secrets     # for the Kubernetes secretGenerator
#
#   api_token     the bearer token of the gateway's HTTP API
#   db_password   the PostgreSQL password of the catalog
#   broker_password  the RabbitMQ password of the scale-out roles' job broker
#   tls.crt/.key  a self-signed DICOM TLS pair for trying TLS out (replace with the
#                 hospital's certificate and key; dicom.tls in gateway.toml)
# Existing files are kept. As root they are given to the gateway's group (GID 10001, mode
# 0640), so the non-root containers can read the compose secrets.
set -euo pipefail
dir=${1:?usage: make-secrets.sh FOLDER}
umask 027
mkdir -p "$dir"
cd "$dir"
new() { [ ! -s "$1" ]; }
if new api_token; then openssl rand -hex 32 >api_token; fi
if new db_password; then openssl rand -hex 24 >db_password; fi
if new broker_password; then openssl rand -hex 24 >broker_password; fi
if new tls.key || new tls.crt; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -subj "/CN=ihgamp-gateway" \
    -keyout tls.key -out tls.crt 2>/dev/null
fi
files=(api_token db_password broker_password tls.crt tls.key)
if [ "$(id -u)" = 0 ]; then
  chgrp 10001 "${files[@]}"
  chmod 0640 "${files[@]}"
else
  # Without root the files can't be given to the container's group: let anyone read them
  # (keep the folder itself private to you).
  chmod 0644 "${files[@]}"
  chmod 0700 .
  echo "make-secrets: not root, so the secrets are mode 0644 inside a 0700 folder" >&2
fi
echo "make-secrets: secrets in $(pwd)"
