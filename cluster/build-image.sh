#!/usr/bin/env bash
# Builds the container image of cairn without a registry or a base image: the
# binary, the shared libraries `ldd` names (and the dynamic loader), a minimal
# /etc, and empty /data, /secret and /tmp, packed into a tarball and loaded with
# `docker import`. Nothing is pulled.
#
#   cluster/build-image.sh [--binary PATH] [--tag TAG] [--no-strip | --strip-all]
#
#   --binary PATH   pack this cairn binary (default: `cargo build --release`,
#                   then target/release/cairn)
#   --tag TAG       image name (default cairn:local)
#   --no-strip      keep the binary's debug sections (default: strip them, which
#                   keeps the symbol table, so panics still name functions)
#   --strip-all     strip the symbol table too (release: 27 instead of 34 MiB;
#                   backtraces then show addresses only)
#
# The image: ENTRYPOINT /usr/local/bin/cairn, CMD --help, user cairn (10001),
# WORKDIR /data, /data and /secret owned by that user (a fresh named volume
# mounted there takes that ownership), NO_COLOR=1, ports 7400 (gRPC), 7401
# (peers), 7480 (HTTP). No shell, no rsync, no fusermount3: `--rsync-addr` and
# `cairn mount` do not work inside it (cluster/README.md). Prints the image size.
set -euo pipefail

readonly UID_CAIRN=10001
# Directories and files of the image must be readable by the cairn user.
umask 022

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary=""
tag="cairn:local"
strip_binary=1
strip_mode=--strip-debug

log() { echo "build-image.sh: $*" >&2; }
die() { log "$*"; exit 1; }
usage() {
  sed -n '/^#   cluster/,/^# The image/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

while (( $# > 0 )); do
  case "$1" in
    --binary) [[ $# -ge 2 ]] || usage; binary="$2"; shift 2 ;;
    --tag) [[ $# -ge 2 ]] || usage; tag="$2"; shift 2 ;;
    --no-strip) strip_binary=0; shift ;;
    --strip-all) strip_mode=--strip-all; shift ;;
    -h|--help) usage ;;
    *) log "unknown argument $1"; usage ;;
  esac
done

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"

if [[ -z "$binary" ]]; then
  log "building cairn (cargo build --release)"
  (cd "$root" && cargo build --release --quiet --bin cairn) >&2
  target_dir="${CARGO_TARGET_DIR:-$root/target}"
  binary="$target_dir/release/cairn"
fi
[[ -x "$binary" ]] || die "no executable cairn binary at $binary"

stage="$(mktemp -d "${TMPDIR:-/tmp}/cairn-image.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
rootfs="$stage/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/data" "$rootfs/secret" "$rootfs/tmp"

cp "$binary" "$rootfs/usr/local/bin/cairn"
chmod 0755 "$rootfs/usr/local/bin/cairn"
if (( strip_binary )); then
  if command -v strip >/dev/null; then
    strip "$strip_mode" "$rootfs/usr/local/bin/cairn"
  else
    log "strip not found (binutils); packing the binary as it is"
  fi
fi

# Every library the binary loads, at the path the loader looks for it, and the
# loader itself (the line without "=>"). A static binary needs none.
libraries=()
if ldd_out="$(ldd "$binary" 2>&1)"; then
  while read -r line; do
    case "$line" in
      *"=> not found"*) die "ldd: a library of $binary is missing: $line" ;;
      *"=> /"*) path="${line#*=> }"; libraries+=("${path%% (*}") ;;
      /*) libraries+=("${line%% (*}") ;;
    esac
  done <<< "$ldd_out"
elif [[ "$ldd_out" != *"not a dynamic executable"* && "$ldd_out" != *"statically linked"* ]]; then
  die "ldd $binary failed: $ldd_out"
fi
for library in "${libraries[@]}"; do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done

cat > "$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
cairn:x:$UID_CAIRN:$UID_CAIRN:cairn:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat > "$rootfs/etc/group" <<EOF
root:x:0:
cairn:x:$UID_CAIRN:
nogroup:x:65534:
EOF
# Names of peers (compose service names) come from Docker's DNS; glibc's
# files and dns sources are built into libc.so.6 (glibc 2.34 and later).
echo "hosts: files dns" > "$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/data" "$rootfs/secret"

# Two passes so that ownership needs no root here: root owns the system part,
# the cairn user its two directories.
tarball="$stage/rootfs.tar"
tar --numeric-owner --owner=0 --group=0 -cf "$tarball" -C "$rootfs" \
  --exclude=./data --exclude=./secret .
tar --numeric-owner --owner="$UID_CAIRN" --group="$UID_CAIRN" -rf "$tarball" -C "$rootfs" \
  ./data ./secret

version="$("$binary" --version 2>/dev/null | awk '{print $2}')"
previous="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/cairn"]' \
  --change 'CMD ["--help"]' \
  --change "USER $UID_CAIRN:$UID_CAIRN" \
  --change 'WORKDIR /data' \
  --change 'ENV NO_COLOR=1' \
  --change 'EXPOSE 7400 7401 7480' \
  --change "LABEL org.opencontainers.image.title=cairn org.opencontainers.image.version=${version:-unknown}" \
  --message "cairn ${version:-unknown} from $(basename "$binary")" \
  "$tarball" "$tag" >/dev/null

# The image this tag named before is left without a name: remove it, unless a
# container still uses it (then `docker image rm` refuses, and that is fine).
current="$(docker image inspect --format '{{.Id}}' "$tag")"
if [[ -n "$previous" && "$previous" != "$current" ]]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi

# The image must at least run its binary.
docker run --rm --network none "$tag" --version >/dev/null \
  || die "the image $tag does not run: docker run --rm $tag --version failed"

size_bytes="$(docker image inspect --format '{{.Size}}' "$tag")"
log "built $tag: $(( size_bytes / 1024 / 1024 )) MiB ($size_bytes bytes): /usr/local/bin/cairn and ${#libraries[@]} libraries"
echo "$tag"
