#!/usr/bin/env bash
# Build the base image `debian:bookworm-slim` from Debian's package mirror, for machines that
# reach a Debian mirror but no container registry. Where a registry is reachable, skip this:
# `docker build` pulls the official image and the Dockerfile is the same.
#
#   deploy/docker/build-base-offline.sh [TAG]     # default TAG: debian:bookworm-slim
#
# The mirror is the one apt on this host is configured with (override: DEBIAN_MIRROR=URL,
# DEBIAN_SECURITY_MIRROR=URL). Needs root (debootstrap), debootstrap and a Docker engine
# (DOCKER_HOST is honoured). Does nothing when the tag already exists.
set -euo pipefail

tag=${1:-debian:bookworm-slim}
suite=bookworm
docker=${DOCKER:-docker}

if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "build-base-offline: $tag exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base-offline: apt-get install debootstrap" >&2; exit 1; }

# The first URI apt uses for a suite, from deb822 (*.sources) or one-line (*.list) files.
apt_uri() {
  local want=$1
  shopt -s nullglob
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    awk -v want="$want" '
      /^[Uu][Rr][Ii][Ss]:/ { uri = $2 }
      /^[Ss]uites:/ { for (i = 2; i <= NF; i++) if ($i == want) { print uri; exit } }
      /^$/ { uri = "" }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v want="$want" '$1 == "deb" && $2 !~ /^\[/ && $3 == want { print $2 }
      $1 == "deb" && $2 ~ /^\[/ { for (i = 3; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == want) print $i; break } }' "$f"
  done
  return 0
}

mirror=${DEBIAN_MIRROR:-$(apt_uri "$suite" | head -n1)}
security=${DEBIAN_SECURITY_MIRROR:-$(apt_uri "$suite-security" | head -n1)}
[ -n "$mirror" ] || { echo "build-base-offline: no Debian mirror for $suite in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }

root=$(mktemp -d /var/tmp/ihgamp-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-base-offline: debootstrap $suite from $mirror (a few minutes)"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Make it look like the official slim image: deb822 sources (main, updates, security),
# no documentation or translations installed by later apt-get runs, empty caches.
rm -f "$root/etc/apt/sources.list"
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$suite" "$suite"
  if [ -n "$security" ]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$security" "$suite"
  fi
} >"$root/etc/apt/sources.list.d/debian.sources"
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/lib/apt/lists/* \
  "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log

tar --numeric-owner -C "$root" -c . | "$docker" import \
  --change 'CMD ["bash"]' \
  --change "LABEL org.opencontainers.image.description=\"Debian $suite minbase built by debootstrap (deploy/docker/build-base-offline.sh)\"" \
  - "$tag" >/dev/null
echo "build-base-offline: built $tag ($("$docker" image inspect -f '{{.Size}}' "$tag") bytes)"
