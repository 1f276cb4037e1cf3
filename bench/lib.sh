# shellcheck shell=bash disable=SC2034  # the variables set here are read by run.sh/profile.sh
# Shared by bench/run.sh and bench/profile.sh (sourced, not run): finding or
# installing what the benchmark needs, building, and the loopback nginx.
#
# Sets: ROOT BENCH_DIR PY NGINX ECHO_MODULE (empty when missing) ECHO_MISSING
#       PARALLEL_MISSING REQUESTS_MISSING NGINX_PID PORT SUPERVISOR HTTP_WORKER
#       TARGET_DIR THREAD_PANIC FLOOR (each empty when not built)

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
ROOT=${ROOT:-$(dirname "$BENCH_DIR")}
PY=${PY:-python3}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The echo module is a separate Debian package; its .so lands in one of
# these, depending on the distribution.
find_echo_module() {
    local d
    for d in /usr/lib/nginx/modules /usr/lib64/nginx/modules /usr/share/nginx/modules /usr/local/nginx/modules; do
        [ -f "$d/ngx_http_echo_module.so" ] && { echo "$d/ngx_http_echo_module.so"; return 0; }
    done
    return 1
}

find_nginx() {
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

# apt-get install, but without letting the package's postinst start a
# system-wide nginx on port 80: a temporary policy-rc.d that says "no" is
# Debian's documented way to keep services down during an install.
apt_install() {
    local made_policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >&2 || rc=$?
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return $rc
}

# Finds or installs nginx + echo module (needed), requests (needed for the
# Python peer), GNU parallel (optional). Installs only as root and unless
# BENCH_NO_INSTALL=1; otherwise it says what is missing. Missing optional
# pieces become "skipped (reason)" rows, never silent omissions.
ensure_deps() {
    local can_install=0 want=()
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
        can_install=1
    fi
    command -v curl >/dev/null || want+=(curl)
    [ -n "$(find_nginx)" ] || want+=(nginx)
    find_echo_module >/dev/null || want+=(libnginx-mod-http-echo)
    if [ ${#want[@]} -gt 0 ]; then
        if [ "$can_install" = 1 ]; then
            log "installing ${want[*]} with apt-get"
            apt_install "${want[@]}" || log "apt-get install ${want[*]} failed"
        else
            log "missing: ${want[*]} (not root, or BENCH_NO_INSTALL=1: install them to run every case)"
        fi
    fi
    command -v curl >/dev/null || die "curl is missing"
    NGINX=$(find_nginx)
    [ -n "$NGINX" ] || die "nginx is missing (apt-get install nginx libnginx-mod-http-echo)"
    ECHO_MODULE=$(find_echo_module || true)
    ECHO_MISSING=""
    [ -n "$ECHO_MODULE" ] || ECHO_MISSING="nginx echo module missing (apt-get install libnginx-mod-http-echo)"

    # GNU parallel is optional: one more peer in case 1.
    PARALLEL_MISSING=""
    if ! parallel --version 2>/dev/null | grep -q "GNU parallel"; then
        [ "$can_install" = 1 ] && { log "installing GNU parallel (optional)"; apt_install parallel || true; }
        parallel --version 2>/dev/null | grep -q "GNU parallel" ||
            PARALLEL_MISSING="GNU parallel not installed"
    fi

    # wrk is optional: nginx's own limit, shown next to the floor (case 1).
    if ! command -v wrk >/dev/null; then
        [ "$can_install" = 1 ] && { log "installing wrk (optional)"; apt_install wrk || true; }
    fi

    # requests for the Python Pool peer: pip first (the python3 on PATH may
    # be a pyenv one that apt's python3-requests does not reach).
    REQUESTS_MISSING=""
    if ! "$PY" -c 'import requests' 2>/dev/null; then
        if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
            log "installing python requests with pip"
            "$PY" -m pip install -q requests >&2 ||
                "$PY" -m pip install -q --user --break-system-packages requests >&2 ||
                { [ "$can_install" = 1 ] && apt_install python3-requests; } || true
        fi
        "$PY" -c 'import requests' 2>/dev/null || REQUESTS_MISSING="python requests not installed"
    fi
}

build_release() {
    if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
        log "BENCH_NO_BUILD=1: using the binaries already in target/release"
    else
        local cargo
        cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
        [ -x "$cargo" ] || die "cargo not found"
        log "cargo build --release --bins"
        (cd "$ROOT" && "$cargo" build --release --bins >&2) || die "the release build failed"
    fi
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    SUPERVISOR=$TARGET_DIR/release/supervisor
    HTTP_WORKER=$TARGET_DIR/release/http-worker
    if [ ! -x "$SUPERVISOR" ] || [ ! -x "$HTTP_WORKER" ]; then
        die "no supervisor/http-worker in $TARGET_DIR/release"
    fi
}

# Case 5's thread-mode harness: an example of the pool crate that runs jobs
# on worker threads like `supervisor --threads` and makes the run's K-th call
# panic in its worker thread. Optional: when it does not build (or BENCH_NO_BUILD=1 and it
# was never built), THREAD_PANIC is empty and that row says "skipped
# (harness not built)". Call after build_release (uses TARGET_DIR).
build_thread_panic() {
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        local cargo
        cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
        log "cargo build --release --example thread_panic -p callpool-pool (optional)"
        (cd "$ROOT" && "$cargo" build --release --example thread_panic -p callpool-pool >&2) ||
            log "the thread_panic harness did not build: case 5's thread-mode row will be skipped"
    fi
    THREAD_PANIC=$TARGET_DIR/release/examples/thread_panic
    [ -x "$THREAD_PANIC" ] || THREAD_PANIC=""
}

# Case 1's floor (issue 23): the `floor` example of the pool crate, which
# runs the project's result writer alone and its HTTP client alone. Optional
# like the thread_panic harness: when it does not build, FLOOR is empty and
# the floor rows say "skipped". Call after build_release (uses TARGET_DIR).
build_floor() {
    if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
        local cargo
        cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
        log "cargo build --release --example floor -p callpool-pool (optional)"
        (cd "$ROOT" && "$cargo" build --release --example floor -p callpool-pool >&2) ||
            log "the floor example did not build: case 1's floor rows will be skipped"
    fi
    FLOOR=$TARGET_DIR/release/examples/floor
    [ -x "$FLOOR" ] || FLOOR=""
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts nginx from bench/nginx.conf.in on a free loopback port, config and
# logs in $1. A port picked free can be taken before nginx binds it, so a
# failed start is retried on another port.
start_nginx() {
    local dir=$1 try
    mkdir -p "$dir"
    for try in 1 2 3 4 5; do
        PORT=$(free_port)
        if [ -n "$ECHO_MODULE" ]; then
            sed -e "s|@PORT@|$PORT|g" -e "s|@DIR@|$dir|g" -e "s|@ECHO_MODULE@|$ECHO_MODULE|g" \
                "$BENCH_DIR/nginx.conf.in" > "$dir/nginx.conf"
        else
            sed -e '/#@echo/d' -e "s|@PORT@|$PORT|g" -e "s|@DIR@|$dir|g" \
                "$BENCH_DIR/nginx.conf.in" > "$dir/nginx.conf"
        fi
        # -e: the startup error log, before the config is read (else nginx
        # wants /var/log/nginx, which a non-root user cannot open).
        "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
        NGINX_PID=$!
        local _
        for _ in $(seq 1 50); do
            if curl -sf -o /dev/null "http://127.0.0.1:$PORT/maps/api/geocode/json?address=probe"; then
                log "nginx $NGINX_PID on 127.0.0.1:$PORT"
                return 0
            fi
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_nginx
        log "nginx did not start on port $PORT (try $try): $(tail -n 3 "$dir/error.log" 2>/dev/null)"
    done
    die "could not start nginx"
}

stop_nginx() {
    if [ -n "${NGINX_PID:-}" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        # TERM = fast shutdown; the master stops its worker too.
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    NGINX_PID=""
}

# The temp dir: on disk (not tmpfs), since result files are part of what is
# measured and every tool writes to the same filesystem. Sets BENCH_TMP (jobs,
# logs, nginx), OUT_ROOT (where the result dirs go) and FS_DESC.
#
# Result dirs go on a fresh ext4 made in a sparse image file on that disk and
# loop-mounted (root only; BENCH_FS=dir turns it off). Why: file creation
# speed on a shared ext4 depends on its history. On this machine's journal-less
# ext4 the inode allocator skips, one lookup each, every inode freed in the
# last 60 s to 6 min, so creating 20,000 files after anyone (another session's
# tests, a previous bench run) deleted many took 6-14 s of system time instead
# of 2-3. A fresh filesystem per run gives every run the same start.
make_tmp() {
    local base=${BENCH_TMPDIR:-/var/tmp}
    mkdir -p "$base"
    BENCH_TMP=$(mktemp -d "$base/callpool-bench.XXXXXX")
    OUT_ROOT=$BENCH_TMP/out
    FS_MOUNT=""
    local fstype
    fstype=$(df --output=fstype "$base" 2>/dev/null | tail -n 1 || echo '?')
    FS_DESC="a directory in $base ($fstype)"
    if [ "${BENCH_FS:-loop}" = loop ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
        local img=$BENCH_TMP/fs.img mnt=$BENCH_TMP/fs
        mkdir -p "$mnt"
        # Sparse: takes only what is written. 1.2M inodes: a full run makes
        # about 500,000 files, and ext4's default ratio would give 500,000.
        if truncate -s "${BENCH_FS_SIZE:-8G}" "$img" &&
            mkfs.ext4 -q -F -N 1200000 -E lazy_itable_init=0,lazy_journal_init=0 "$img" &&
            mount -o loop "$img" "$mnt" 2>/dev/null; then
            FS_MOUNT=$mnt
            OUT_ROOT=$mnt/out
            FS_DESC="a fresh ext4 (journal, default options) on a loop device, image in $base ($fstype)"
        else
            log "could not loop-mount a fresh ext4 (no loop devices?): result dirs go in $base"
            rm -f "$img"
        fi
    fi
    mkdir -p "$OUT_ROOT"
}

remove_tmp() {
    [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ] || return 0
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $BENCH_TMP${FS_MOUNT:+ (result dirs in $FS_MOUNT, still mounted: umount it when done)}"
        return 0
    fi
    if [ -n "${FS_MOUNT:-}" ]; then
        # The loop device is freed with the mount (autoclear); -l if a
        # straggler still holds it.
        umount "$FS_MOUNT" 2>/dev/null || umount -l "$FS_MOUNT" 2>/dev/null || log "could not unmount $FS_MOUNT"
    fi
    log "removing $BENCH_TMP"
    rm -rf "$BENCH_TMP"
    sync
}

# On exit, also on Ctrl-C: stop the background job in BG_PID (a runner
# started with `&` so that this trap runs at once on a signal; it kills what
# it runs, in its own process group, on TERM), then run CLEANUP_EXTRA (a
# function name, if the script starts more), then stop nginx and remove the
# temp dir.
BG_PID=""
CLEANUP_EXTRA=""
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$BG_PID" ] && kill -0 "$BG_PID" 2>/dev/null; then
        kill -TERM "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
    fi
    [ -z "$CLEANUP_EXTRA" ] || "$CLEANUP_EXTRA"
    stop_nginx
    remove_tmp
    exit "$rc"
}
install_cleanup() {
    CLEANUP_EXTRA=${1:-}
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
