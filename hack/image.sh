#!/usr/bin/env bash
# hack/image.sh - build the zoom-operator and zoom-sim container images without Docker or a
# registry: the same images the Dockerfile builds (distroless-cc-like runtime: glibc and
# libgcc, CA certificates, /etc/passwd with nonroot = 65532, the binary), assembled with umoci
# from the cargo release build and files of installed Debian packages.
#
# Usage:
#   hack/image.sh [--tag TAG] [NAME...]      NAME: zoom-operator, zoom-sim (default: both),
#                                            busybox (a test tool image for the e2e suite's
#                                            sink and workload Pods, from busybox-static)
#
# Writes target/images/NAME.tar (an OCI image layout, tarred) and prints its path, one line per
# image, on stdout. Import into containerd with
#   ctr -n k8s.io images import --base-name docker.io/local/NAME target/images/NAME.tar
# which names it docker.io/local/NAME:TAG (TAG defaults to the crate version, which is also the
# chart's appVersion). The release build is cargo's (target/release), so a warm run only
# re-assembles the layers (a few seconds). Needs root for apt (umoci is installed when missing).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '[image] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

tag=""
names=()
while (($#)); do
  case $1 in
  --tag)
    [[ $# -ge 2 ]] || die "--tag needs a value"
    tag=$2
    shift 2
    ;;
  zoom-operator | zoom-sim | busybox)
    names+=("$1")
    shift
    ;;
  *) die "unknown argument '$1' (usage: hack/image.sh [--tag TAG] [zoom-operator] [zoom-sim])" ;;
  esac
done
((${#names[@]})) || names=(zoom-operator zoom-sim)
if [[ -z ${tag} ]]; then
  tag="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
fi
[[ ${tag} =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'${tag}' is not a valid image tag"

ensure_tools() {
  local missing=() p
  command -v umoci >/dev/null || missing+=(umoci)
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  ((${#missing[@]})) || return 0
  log "installing apt packages: ${missing[*]}"
  apt-get -q update -o DPkg::Lock::Timeout=600 >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
}

# stage_rootfs BIN ROOTFS: the runtime stage's files. The shared libraries are exactly those
# the binary loads (ldd), copied from the Debian packages installed here (dpkg -S must know
# each one), at the paths the binary asks for.
stage_rootfs() {
  local bin=$1 root=$2 name
  name="$(basename "${bin}")"
  mkdir -p "${root}/usr/local/bin" "${root}/etc/ssl/certs" "${root}/tmp" "${root}/home/nonroot"
  install -m 0755 "${bin}" "${root}/usr/local/bin/${name}"
  local lib
  while read -r lib; do
    [[ -n ${lib} ]] || continue
    dpkg -S "$(readlink -f "${lib}")" >/dev/null 2>&1 || dpkg -S "${lib}" >/dev/null 2>&1 ||
      die "${lib} (needed by ${name}) is not from a Debian package"
    mkdir -p "${root}$(dirname "${lib}")"
    cp -L "${lib}" "${root}${lib}"
  done < <(ldd "${bin}" | grep -oE '/[^ ]+' | sort -u)
  cp -L /etc/ssl/certs/ca-certificates.crt "${root}/etc/ssl/certs/ca-certificates.crt"
  printf 'hosts: files dns\n' >"${root}/etc/nsswitch.conf"
  write_passwd "${root}"
}

write_passwd() { # ROOTFS
  local root=$1
  mkdir -p "${root}/etc"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"${root}/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"${root}/etc/group"
  chown 65532:65532 "${root}/home/nonroot"
  chmod 1777 "${root}/tmp"
}

# stage_busybox ROOTFS: busybox from Debian's busybox-static .deb (downloaded, not installed:
# it conflicts with the host's busybox), with its applets linked in /bin.
stage_busybox() {
  local root=$1 deb
  deb="$(mktemp -d target/images/.busybox.XXXXXX)"
  if ! (cd "${deb}" && apt-get download -q -o APT::Sandbox::User=root busybox-static >&2); then
    log "apt-get download busybox-static failed; updating the package lists and retrying"
    apt-get -q update -o DPkg::Lock::Timeout=600 >&2
    (cd "${deb}" && apt-get download -q -o APT::Sandbox::User=root busybox-static >&2) ||
      die "apt-get download busybox-static failed"
  fi
  dpkg-deb -x "${deb}"/busybox-static_*.deb "${deb}/x"
  mkdir -p "${root}/bin" "${root}/tmp" "${root}/home/nonroot"
  install -m 0755 "${deb}/x/bin/busybox" "${root}/bin/busybox"
  local applet
  for applet in sh cat ls sleep httpd head wc tee mkdir env date; do ln -sf busybox "${root}/bin/${applet}"; done
  rm -rf "${deb}"
  write_passwd "${root}"
  chown 65532:65532 "${root}/home/nonroot"
  chmod 1777 "${root}/tmp"
}

# assemble NAME TAG OUT: an OCI layout with one layer and the Dockerfile's config, tarred.
assemble() {
  local name=$1 tag=$2 out=$3 work
  work="$(mktemp -d target/images/.build-"${name}".XXXXXX)"
  local layout="${work}/layout"
  umoci init --layout "${layout}"
  umoci new --image "${layout}:${tag}"
  umoci unpack --image "${layout}:${tag}" "${work}/bundle" >&2
  local entrypoint=/usr/local/bin/${name}
  if [[ ${name} == busybox ]]; then
    stage_busybox "${work}/bundle/rootfs"
    entrypoint=/bin/busybox
  else
    stage_rootfs "target/release/${name}" "${work}/bundle/rootfs"
  fi
  umoci repack --image "${layout}:${tag}" "${work}/bundle"
  umoci config --image "${layout}:${tag}" \
    --config.user 65532:65532 \
    --config.entrypoint "${entrypoint}" \
    --config.workingdir / \
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --config.label "org.opencontainers.image.title=${name}" \
    --config.label "org.opencontainers.image.version=${tag}" \
    --architecture "$(dpkg --print-architecture)" --os linux
  umoci gc --layout "${layout}"
  tar -C "${layout}" -cf "${out}.tmp" oci-layout index.json blobs
  mv "${out}.tmp" "${out}"
  rm -rf "${work}"
}

ensure_tools
mkdir -p target/images
bins=()
for n in "${names[@]}"; do [[ ${n} == busybox ]] || bins+=(-p "${n}" --bin "${n}"); done
if ((${#bins[@]})); then
  log "cargo build --release ${bins[*]}"
  nice -n 10 cargo build --release --locked "${bins[@]}" >&2
fi
for n in "${names[@]}"; do
  started=${SECONDS}
  assemble "${n}" "${tag}" "target/images/${n}.tar"
  log "${n}:${tag} -> target/images/${n}.tar ($(du -h "target/images/${n}.tar" | cut -f1), $((SECONDS - started))s)"
  echo "$(pwd)/target/images/${n}.tar"
done
