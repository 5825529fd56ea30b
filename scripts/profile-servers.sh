#!/usr/bin/env bash
# The syscall profiler on real servers (docs/beyond-flexsc.md, "The syscall profiler"): Apache
# httpd (worker MPM, -X) and MariaDB, each under `flexsc profile` with a short load (ab, sysbench),
# and each once natively under `strace -f` read by `flexsc profile --strace` (strace sees the calls
# libflexsc does not interpose: mmap, futex, io_uring_enter...).
#
#   bash scripts/profile-servers.sh [OUT]      (default OUT: /tmp/flexsc-profile-servers)
#
# Reports go to OUT/<run>/report.txt (and graph.dot, graph.svg). Ports 18180 and 13407 and a
# private datadir and socket: nothing shared with scripts/servers.sh (18080, 13307). Needs root
# (Apache drops to www-data), apache2, apache2-utils, mariadb-server, sysbench, strace, curl; and
# `cargo build --release -p flexsc-preload` first (or FLEXSC_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FLEXSC=${FLEXSC_BIN:-${CARGO_TARGET_DIR:-target}/release/flexsc}
OUT=${1:-/tmp/flexsc-profile-servers}
APACHE_PORT=18180
MARIADB_PORT=13407
[[ -x $FLEXSC ]] || { echo "no $FLEXSC: cargo build --release -p flexsc-preload" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT"
chmod 755 "$OUT"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ready() { # wait_ready PID SECONDS CMD...
    local pid=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "server $pid died" >&2; return 1; }
        ((SECONDS < deadline)) || { echo "server $pid not ready" >&2; return 1; }
        sleep 0.1
    done
}

stop() { # stop PIDFILE PID: SIGTERM to the server (its pid file), then wait for PID (the
    # launcher or strace) at most 60 s
    kill -TERM "$(<"$1")"
    timeout 60 tail --pid="$2" -f /dev/null || { echo "$2 did not stop" >&2; kill -KILL "$2"; }
    wait "$2" 2>/dev/null || true
}

# An output directory whose records/ the server's unprivileged processes can write to.
outdir() { mkdir -p "$OUT/$1/records"; chmod 1777 "$OUT/$1/records"; echo "$OUT/$1"; }

# ---- Apache ----------------------------------------------------------------------------------
AW=$OUT/apache-work
mkdir -p "$AW/apache" "$AW/htdocs"
chmod 755 "$AW" "$AW/htdocs"
head -c 4096 /dev/urandom >"$AW/htdocs/4k.bin"
chmod 644 "$AW/htdocs/4k.bin"
sed -e "s|@DIR@|$AW|g" -e "s|@PORT@|$APACHE_PORT|g" -e "s|@USER@|www-data|g" \
    -e "s|@LOG@|$AW/error.log|g" scripts/servers/apache2.conf.in >"$AW/apache.conf"
URL=http://127.0.0.1:$APACHE_PORT/4k.bin

apache_profile() { # apache_profile NAME AB-ARGS...: one run of `flexsc profile` under ab
    local name=$1 dir
    shift
    dir=$(outdir "$name")
    "$FLEXSC" profile -o "$dir" --top 12 --max-len 6 -- apache2 -f "$AW/apache.conf" -X \
        >"$dir/stdout.txt" 2>"$dir/stderr.txt" &
    local pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" 20 curl -sf --max-time 2 -o /dev/null "$URL"
    echo "== apache $name: ab $*" | tee "$dir/load.txt"
    timeout 120 ab -q "$@" "$URL" >>"$dir/load.txt" 2>&1
    grep -E "Complete requests|Failed requests|Requests per second" "$dir/load.txt"
    stop "$AW/apache/httpd.pid" "$pid"
}
apache_profile apache-keepalive -k -n 20000 -c 64
apache_profile apache -n 5000 -c 64

# strace -f, natively: fewer requests (strace slows every call).
SD=$OUT/apache-strace
mkdir -p "$SD"
strace -f -o "$SD/trace" apache2 -f "$AW/apache.conf" -X >"$SD/server.txt" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_ready "$pid" 30 curl -sf --max-time 2 -o /dev/null "$URL"
echo "== apache strace: ab -n 2000 -c 16" | tee "$SD/load.txt"
timeout 120 ab -q -n 2000 -c 16 "$URL" >>"$SD/load.txt" 2>&1
grep -E "Complete requests|Failed requests" "$SD/load.txt"
stop "$AW/apache/httpd.pid" "$pid"
"$FLEXSC" profile -o "$SD" --top 12 --max-len 6 --strace "$SD/trace" >/dev/null

# ---- MariaDB ---------------------------------------------------------------------------------
MW=$OUT/mariadb-work
mkdir -p "$MW/mysql/data" "$MW/mysql/tmp"
sed -e "s|@DIR@|$MW|g" -e "s|@PORT@|$MARIADB_PORT|g" scripts/servers/my.cnf.in >"$MW/my.cnf"
SOCK=$MW/mysql/mysqld.sock
timeout 120 mariadb-install-db --defaults-file="$MW/my.cnf" --auth-root-authentication-method=normal \
    --skip-test-db >"$MW/install.log" 2>&1
SYSBENCH=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MARIADB_PORT"
    --mysql-user=sbtest --mysql-password=sbtest --mysql-db=sbtest --tables=4 --table-size=10000)
ready() { timeout 5 mariadb --no-defaults -S "$SOCK" -u root -e 'SELECT 1'; }

# The data, made natively (not profiled).
mariadbd --defaults-file="$MW/my.cnf" >"$MW/prepare.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_ready "$pid" 30 ready
timeout 60 mariadb --no-defaults -S "$SOCK" -u root -e "CREATE DATABASE sbtest;
    CREATE USER sbtest@'127.0.0.1' IDENTIFIED BY 'sbtest'; GRANT ALL ON sbtest.* TO sbtest@'127.0.0.1';"
timeout 120 "${SYSBENCH[@]}" oltp_read_write prepare >"$MW/sysbench-prepare.txt" 2>&1
stop "$MW/mysql/mysqld.pid" "$pid"

mariadb_load() { # mariadb_load DIR SECONDS
    local w
    for w in oltp_read_only oltp_read_write; do
        echo "== mariadb: sysbench $w --threads=16 --time=$2" | tee -a "$1/load.txt"
        timeout $(($2 + 60)) "${SYSBENCH[@]}" "$w" --threads=16 --time="$2" run >>"$1/load.txt" 2>&1
        grep -E "transactions:|ignored errors" "$1/load.txt" | tail -2
    done
}

dir=$(outdir mariadb)
# 16 connection threads make about 150,000 calls each in 20 s: a ring that keeps them all.
"$FLEXSC" profile -o "$dir" --top 12 --max-len 6 --ring 262144 -- mariadbd --defaults-file="$MW/my.cnf" \
    >"$dir/stdout.txt" 2>"$dir/stderr.txt" &
pid=$!
PIDS+=("$pid")
wait_ready "$pid" 30 ready
mariadb_load "$dir" 10
stop "$MW/mysql/mysqld.pid" "$pid"

SD=$OUT/mariadb-strace
mkdir -p "$SD"
strace -f -o "$SD/trace" mariadbd --defaults-file="$MW/my.cnf" >"$SD/server.txt" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_ready "$pid" 60 ready
mariadb_load "$SD" 5
stop "$MW/mysql/mysqld.pid" "$pid"
"$FLEXSC" profile -o "$SD" --top 12 --max-len 6 --strace "$SD/trace" >/dev/null

trap - EXIT
echo "reports: $OUT/{apache-keepalive,apache,apache-strace,mariadb,mariadb-strace}/report.txt"
