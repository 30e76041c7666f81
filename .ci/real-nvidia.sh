#!/usr/bin/env bash
# Download NVIDIA's own libnvidia-ml1 and nvidia-smi from Debian's non-free archive into a
# private folder ($1) and unpack them there: nothing is installed system-wide. The archive is
# the one this machine's apt already uses, with non-free added in a sources list of our own.
# Exits non-zero (and the caller carries on without the real-library tests) where apt cannot.
set -euo pipefail
root="$1"
[ -e "$root/usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.1" ] && exit 0
command -v apt-get >/dev/null && command -v dpkg >/dev/null || { echo "no apt-get/dpkg"; exit 1; }
[ "$(dpkg --print-architecture)" = amd64 ] || { echo "not amd64"; exit 1; }
apt="$root/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$root/debs"
src=/etc/apt/sources.list.d/debian.sources
[ -f "$src" ] || { echo "no $src to take the archive from"; exit 1; }
# Same archive and suites as the system's sources, with the non-free components.
sed -E 's/^Components:.*/Components: main non-free non-free-firmware/' "$src" >"$apt/sources.list.d/debian.sources"
opts=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$apt/sources.list.d"
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${opts[@]}" -qq update
(cd "$root/debs" && apt-get "${opts[@]}" -qq download libnvidia-ml1 nvidia-smi)
for deb in "$root"/debs/*.deb; do dpkg -x "$deb" "$root"; done
ls "$root/usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.1" >/dev/null
