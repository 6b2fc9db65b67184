#!/usr/bin/env bash
# Builds the release binary and, on request, the OCI image.
#
#   scripts/build.sh [-o FILE]          static binary (default dist/warden)
#   scripts/build.sh image [-t NAME] [-b FILE]
#                                       the binary (or FILE, one built before), then the
#                                       image deploy/Containerfile describes, with buildah
#                                       (default name warden:VERSION)
#
# The binary is static (CGO_ENABLED=0: SQLite is pure Go, so nothing needs
# libc), built with -trimpath (no build paths in it) and -s -w (no symbol
# table or DWARF: a third of the size, and panics still print Go stack
# traces). `warden version` prints what is stamped here:
#   WARDEN_VERSION  default: `git describe --tags --always --dirty`, else "dev"
#   WARDEN_COMMIT   default: `git rev-parse HEAD` (+ "-dirty" with local changes)
# GOOS and GOARCH cross-compile as usual.
#
# Building the image needs no Docker daemon: buildah runs as root with the
# vfs storage driver and chroot isolation (see the README, "Deploying").
set -euo pipefail
cd "$(dirname "$0")/.."

mode=binary
if [ "${1:-}" = image ]; then
	mode=image
	shift
fi
out=dist/warden
tag=
bin=
while [ $# -gt 0 ]; do
	case "$1" in
	-o) out=$2; shift 2 ;;
	-t) tag=$2; shift 2 ;;
	-b) bin=$2; shift 2 ;;
	*) echo "usage: scripts/build.sh [-o FILE] | scripts/build.sh image [-t NAME] [-b FILE]" >&2; exit 2 ;;
	esac
done

version=${WARDEN_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=${WARDEN_COMMIT:-}
if [ -z "$commit" ]; then
	commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
	if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		commit=$commit-dirty
	fi
fi

if [ -n "$bin" ]; then
	out=$bin
else
	pkg=github.com/wardenmcp/warden/internal/server
	mkdir -p "$(dirname "$out")"
	CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit" \
		-o "$out" ./cmd/warden
	echo "built $out: warden $version, commit $commit, $(wc -c <"$out") bytes" >&2
fi
[ "$mode" = image ] || exit 0

# The image's build context: the binary, the host's CA bundle (for HTTPS
# upstreams and PostgreSQL/Redis over TLS) and deploy/rootfs (passwd, group,
# the demo's data directory and /tmp, owned by the non-root user).
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp -a deploy/rootfs "$ctx/rootfs"
mkdir -p "$ctx/rootfs/data" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
chmod 0700 "$ctx/rootfs/data"
ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -f "$ca" ]; then
	echo "no CA bundle at $ca: install the Debian package ca-certificates" >&2
	exit 1
fi
mkdir -p "$ctx/rootfs/etc/ssl/certs"
cp "$ca" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$out" "$ctx/warden"
cp deploy/Containerfile "$ctx/Containerfile"
buildah --storage-driver vfs bud --isolation chroot --layers=false \
	--build-arg "VERSION=$version" --build-arg "COMMIT=$commit" \
	-t "${tag:-warden:$version}" -f "$ctx/Containerfile" "$ctx"
