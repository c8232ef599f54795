#!/bin/sh
# Installs the Debian packages vitrain needs to build and test, when missing.
# Runs as root, or through sudo. Safe to run again: it installs only what is absent.
#   scripts/install_deps.sh [--study] [PACKAGE]...
# --study adds what scripts/study.sh needs beyond the build: gnuplot for
# its plots. Other arguments are further Debian packages.
set -eu

PACKAGES="build-essential pkg-config libopenblas-openmp-dev check libsubunit-dev libstb-dev"
STUDY_PACKAGES="gnuplot-nox"

extra=""
for arg in "$@"; do
    case $arg in
    --study) extra="$extra $STUDY_PACKAGES" ;;
    -*) echo "install_deps: unknown option '$arg' (--study, or package names)" >&2; exit 2 ;;
    *) extra="$extra $arg" ;;
    esac
done

missing=""
for pkg in $PACKAGES $extra; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "install_deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install_deps: missing packages:$missing" >&2
    echo "install_deps: run this script as root or install sudo" >&2
    exit 1
fi

echo "install_deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
$SUDO apt-get install -y -qq --no-install-recommends $missing
