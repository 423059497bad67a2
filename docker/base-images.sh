#!/bin/sh
# The base image both Dockerfiles start FROM, debian:bookworm-slim, made from
# Debian's packages where no registry serves it (an air-gapped site): as root,
#   sh docker/base-images.sh
# Pulls it if it can; otherwise debootstraps a minbase bookworm from the mirror
# apt already uses here (MIRROR= and SECURITY_MIRROR= override) and imports it
# under the same name. Needs debootstrap (apt-get install debootstrap); 1-2 min.
set -eu

IMAGE=debian:bookworm-slim
SUITE=bookworm

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE: present"
    exit 0
fi
if timeout "${PULL_TIMEOUT:-60}" docker pull "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE: pulled"
    exit 0
fi

# The first URI apt's sources give for a suite, in either format
# (deb822 .sources files or one-line sources.list).
apt_uri() {
    suite=$1
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (uri != "" && found) exit; uri = ""; found = 0; next }
            tolower($1) == "uris:"   { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
            END { if (uri != "" && found) print uri }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v suite="$suite" '$1 == "deb" { sub(/\[[^]]*\] */, ""); if ($3 == suite) print $2 }'
}

MIRROR=${MIRROR:-$(apt_uri "$SUITE" | head -n 1)}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uri "$SUITE-security" | head -n 1)}
: "${MIRROR:?no Debian mirror for $SUITE in apt's sources: set MIRROR=http://...}"
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

work=$(mktemp -d /var/tmp/base-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
echo "$IMAGE: not pullable; building it from $MIRROR"

# Slim as the official image is: no docs, man pages or translations in any
# package installed later either.
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# And, as there, apt keeps no downloaded packages or caches in a layer.
mkdir -p "$rootfs/etc/apt/apt.conf.d"
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

# The official image's sources, on this site's mirror, and its security fixes.
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
{ chroot "$rootfs" apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get upgrade -y -qq; } >"$work/upgrade.log" 2>&1 \
    || { tail -n 20 "$work/upgrade.log" >&2; exit 1; }
chroot "$rootfs" apt-get clean
# What debootstrap installed before the dpkg excludes applied, and caches.
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
# Docker provides these at run time.
: > "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/hostname"

tar --numeric-owner -C "$rootfs" -c . |
    docker import --change 'CMD ["bash"]' --message "debootstrap --variant=minbase $SUITE $MIRROR" - "$IMAGE" >/dev/null
echo "$IMAGE: built ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
