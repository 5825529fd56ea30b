#!/usr/bin/env bash
# Real servers under libflexsc: Apache httpd 2.4 (worker MPM), MariaDB 10.11 and memcached 1.6,
# each driven end to end on 127.0.0.1 by its usual load generator (ab + curl, sysbench + mariadb
# clients, memcaslap), with checks that the answers are right, not only that they came.
#
#   bash scripts/servers.sh [--install] [--backend uring|threads]... [--native] [--compare]
#                           [apache|mariadb|memcached]...
#
# No server named: all three. Each server is checked under each backend (default: uring and
# threads). --native runs the same checks without libflexsc (proves the checks themselves right;
# with --backend too, both). --compare then measures native against libflexsc throughput,
# alternately, 3 rounds, and prints the medians. --install installs the servers and clients from
# Debian 12's packages first. FLEXSC_BIN: the launcher (default target/release/flexsc, built if
# missing). Needs root: Apache drops to www-data, memcached and mariadbd run as root.
#
# One line per check (PASS/FAIL name: detail), a summary, exit status 1 if any check failed.
# Everything lives in a fresh mktemp -d directory, removed at the end; servers are stopped by
# their PID. Templates: scripts/servers/*.in. See also ../shared/notes/workloads.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATES=$ROOT/scripts/servers

# Ports away from the usual ones (80, 3306, 11211: a Debian install may have started the
# packaged services) and from 8089, which other project tests use.
APACHE_PORT=18080
MARIADB_PORT=13307
MEMCACHED_PORT=11311
# Sizes of the loads (see the notes: about 100 s per server and backend on 2 cores).
AB_REQUESTS=20000
AB_CONCURRENCY=256
CURL_FETCHES=2000
CURL_PARALLEL=64
SYSBENCH_TIME=20
LOSTWRITE_CLIENTS=32
LOSTWRITE_ROWS=200 # per client: this many INSERTs and as many UPDATE increments
LOSTWRITE_COUNTERS=8
MEMCASLAP_TIME=10s
COMPARE_ROUNDS=3

usage() {
    sed -n '6,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# Arguments.
install=0 native=0 compare=0
backends=() servers=()
while (($#)); do
    case $1 in
        --install) install=1 ;;
        --native) native=1 ;;
        --compare) compare=1 ;;
        --backend)
            (($# >= 2)) || usage
            backends+=("$2")
            shift
            ;;
        --backend=*) backends+=("${1#--backend=}") ;;
        apache | mariadb | memcached) servers+=("$1") ;;
        -h | --help) usage ;;
        *)
            echo "servers.sh: unknown argument: $1" >&2
            usage
            ;;
    esac
    shift
done
for b in "${backends[@]}"; do
    case $b in uring | threads) ;; *)
        echo "servers.sh: --backend: uring or threads, not '$b'" >&2
        exit 2
        ;;
    esac
done
((${#servers[@]})) || servers=(apache mariadb memcached)
# The modes each server is checked in: --native alone means native only.
modes=()
((native)) && modes+=(native)
if ((${#backends[@]})); then
    modes+=("${backends[@]}")
elif ((!native)); then
    backends=(uring threads)
    modes+=("${backends[@]}")
fi
if ((compare)) && ((${#backends[@]} == 0)); then
    backends=(uring threads) # --compare --native: still compare against both backends
fi

if ((EUID != 0)); then
    echo "servers.sh: run as root (Apache switches to www-data, memcached -u root, apt-get)" >&2
    exit 2
fi

if ((install)); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # wrk: not used here; flexsc-bench's full evaluation loads Apache with it too.
    apt-get install -y --no-install-recommends apache2 apache2-utils mariadb-server sysbench \
        memcached libmemcached-tools curl wrk
fi

for tool in apache2 ab curl mariadbd mariadb-install-db mariadb sysbench \
    memcached memcaslap sha256sum timeout xargs; do
    command -v "$tool" >/dev/null || {
        echo "servers.sh: $tool not found (--install installs the servers and clients)" >&2
        exit 2
    }
done
id www-data >/dev/null 2>&1 || {
    echo "servers.sh: no www-data user (Apache runs as www-data)" >&2
    exit 2
}

# The launcher: needed unless only --native checks run.
FLEXSC_BIN=${FLEXSC_BIN:-$ROOT/target/release/flexsc}
if ((${#backends[@]})) && [[ ! -x $FLEXSC_BIN ]]; then
    if [[ $FLEXSC_BIN == "$ROOT/target/release/flexsc" ]]; then
        (cd "$ROOT" && cargo build --release -p flexsc-preload)
    else
        echo "servers.sh: FLEXSC_BIN=$FLEXSC_BIN is not an executable" >&2
        exit 2
    fi
fi

# ---------------------------------------------------------------------------------------------
# Work directory, results, cleanup.
WORK=$(mktemp -d /tmp/flexsc-servers.XXXXXX)
# Apache's workers run as www-data: they must reach the document root and write the stats file.
chmod 755 "$WORK"
RUNNING=()      # PIDs of servers (and forked children) still to be stopped
START_FAILED=() # "server[mode]" of the servers that did not start in their checks
passes=0 fails=0 failed=()
start_time=$SECONDS

cleanup() {
    local pid
    for pid in "${RUNNING[@]}"; do
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { # pass NAME DETAIL
    passes=$((passes + 1))
    echo "PASS $1${2:+: $2}"
}
fail() { # fail NAME REASON [LOG...]: the logs' last lines help to see why
    local log
    fails=$((fails + 1))
    failed+=("$1")
    echo "FAIL $1: $2"
    for log in "${@:3}"; do
        [[ -s $log ]] || continue
        echo "    --- last lines of $(basename "$log"):"
        tail -n 15 "$log" | sed 's/^/    | /'
    done
}

# A process that exited but was not waited for yet is a zombie: kill -0 still succeeds on it.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

children_of() { # the PIDs whose parent is $1
    local f stat
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r _ ppid _ <<<"$stat"
        [[ $ppid == "$1" ]] && echo "${f//[^0-9]/}"
    done
    return 0
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server MODE STATS LOG CMD [ARGS...]: starts CMD in the background, natively or under
# libflexsc with backend MODE, stdout and stderr to LOG; sets SERVER_PID. A wrapper waits for
# it and writes its exit status to $WORK/status/PID: so bash's own report of a server killed by a
# signal ("Segmentation fault") lands in LOG, not in the middle of this script's output.
start_server() {
    local mode=$1 stats=$2 log=$3 pidfile=$WORK/status/new
    shift 3
    mkdir -p "$WORK/status"
    rm -f "$pidfile"
    {
        if [[ $mode == native ]]; then
            "$@" >"$log" 2>&1 &
        else
            "$FLEXSC_BIN" run --backend "$mode" --stats="$stats" -- "$@" >"$log" 2>&1 &
        fi
        pid=$!
        echo "$pid" >"$pidfile"
        status=0
        wait "$pid" || status=$?
        echo "$status" >"$WORK/status/$pid"
    } 2>>"$log" &
    until [[ -s $pidfile ]]; do sleep 0.01; done
    SERVER_PID=$(<"$pidfile")
    RUNNING+=("$SERVER_PID")
}

# wait_ready PID SECONDS CMD...: runs CMD every 0.1 s until it succeeds; fails if PID exits or
# SECONDS pass first.
wait_ready() {
    local pid=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@" >/dev/null 2>&1; do
        alive "$pid" || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

forget() { # forget PID: stopped; the cleanup must not signal it (its PID may be reused)
    local keep=() p
    for p in "${RUNNING[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    RUNNING=("${keep[@]}")
}

# stop_server PID SECONDS: SIGTERM, then waits up to SECONDS for the process to exit by itself,
# else SIGKILL. Sets STOP_STATUS (the exit status, 128+N for signal N, or "none": killed).
stop_server() {
    local pid=$1 limit=$2 t=0 status=$WORK/status/$1
    kill -TERM "$pid" 2>/dev/null || true
    until [[ -s $status ]]; do
        if ((t++ >= limit * 10)); then
            kill -KILL "$pid" 2>/dev/null || true
            forget "$pid"
            STOP_STATUS=none
            return 1
        fi
        sleep 0.1
    done
    forget "$pid"
    STOP_STATUS=$(<"$status")
    [[ $STOP_STATUS == 0 ]]
}

# After a failed start: stop what is left, say how it went (no separate check).
stop_after_failed_start() {
    if stop_server "$1" 10; then
        echo "    (SIGTERM after the failed start: exit status 0)"
    else
        echo "    (SIGTERM after the failed start: $(describe_status "$STOP_STATUS"))"
    fi
}

describe_status() { # a readable form of STOP_STATUS
    case $1 in
        none) echo "still running after the timeout: SIGKILLed" ;;
        0) echo "exit status 0" ;;
        *) if (($1 > 128)); then echo "killed by signal $(kill -l $(($1 - 128))) (status $1)"; else echo "exit status $1"; fi ;;
    esac
}

# The "posted" column of the stats table's "all" row: the system calls that went through the
# syscall pages. Summed over the tables in the file (one per process that ran the runtime). The
# column is found by its name in the "carrier ..." header line (the first fields are one word).
stats_posted() {
    if [[ -s $1 ]]; then
        awk '$1 == "carrier" { col = 0; for (i = 2; i <= NF; i++) if ($i == "posted") col = i }
             $1 == "all" && col { s += $col; n++ }
             END { if (n) print s; else print "none" }' "$1"
    else
        echo none
    fi
}

# The "all" row's calls run on the carriers (the table's "local" column, found counting from
# the end: the headers "mean batch" and "max batch" before it are two words each), or "none".
stats_local() {
    if [[ -s $1 ]]; then
        awk '$1 == "carrier" { back = 0; for (i = 2; i <= NF; i++) if ($i == "local") back = NF - i }
             $1 == "all" && back { s += $(NF - back); n++ }
             END { if (n) print s; else print "none" }' "$1"
    else
        echo none
    fi
}

render() { # render TEMPLATE OUT KEY=VALUE...: replaces @KEY@ by VALUE
    local tmpl=$1 out=$2 kv script=()
    shift 2
    for kv in "$@"; do script+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${script[@]}" "$tmpl" >"$out"
}

first_lines() { # the first 3 lines of stdin as one line (for a FAIL line)
    head -n 3 | cut -c 1-240 | paste -sd '|' | sed 's/|/ | /g'
}

median() { # the median of the arguments (n/a: missing samples)
    local v=() x
    for x in "$@"; do [[ $x == n/a ]] || v+=("$x"); done
    ((${#v[@]})) || {
        echo n/a
        return
    }
    printf '%s\n' "${v[@]}" | sort -g | sed -n "$(((${#v[@]} + 1) / 2))p"
}

# Compare results: COMPARE[workload|mode] = samples, in the order of COMPARE_ROWS.
declare -A COMPARE=()
COMPARE_ROWS=()
COMPARE_SKIPPED=() # server[backend] not compared: it did not start
record() { # record WORKLOAD MODE VALUE
    if [[ ! -v COMPARE["$1|native"] && ! -v COMPARE["$1|$2"] ]]; then COMPARE_ROWS+=("$1"); fi
    COMPARE["$1|$2"]+=" ${3:-n/a}"
}

# ---------------------------------------------------------------------------------------------
# Apache httpd 2.4, worker MPM.
APACHE=$WORK/apache
apache_setup() {
    mkdir -p "$APACHE" "$WORK/htdocs"
    # Random bodies: a corrupted or misplaced byte cannot go unnoticed.
    head -c 4096 /dev/urandom >"$WORK/htdocs/4k.bin"
    head -c 102400 /dev/urandom >"$WORK/htdocs/100k.bin"
    chmod 644 "$WORK"/htdocs/*
}

# apache_start MODE TAG APACHE-ARGS...: one config per instance (its own error log).
apache_start() {
    local mode=$1 tag=$2
    shift 2
    APACHE_LOG=$WORK/apache-$tag-$mode-error.log
    APACHE_OUT=$WORK/apache-$tag-$mode.out
    APACHE_STATS=$WORK/stats-apache-$tag-$mode.txt
    render "$TEMPLATES/apache2.conf.in" "$APACHE/$tag-$mode.conf" \
        "DIR=$WORK" "PORT=$APACHE_PORT" "USER=www-data" "LOG=$APACHE_LOG"
    rm -f "$APACHE/httpd.pid" # else a warning that the last instance's was overwritten
    # The workers (www-data) write the statistics at exit.
    : >"$APACHE_STATS"
    chown www-data:www-data "$APACHE_STATS"
    start_server "$mode" "$APACHE_STATS" "$APACHE_OUT" apache2 -f "$APACHE/$tag-$mode.conf" "$@"
    wait_ready "$SERVER_PID" 15 curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$APACHE_PORT/4k.bin"
}

# run_ab OUT [-k]: ab bounded in requests (-n) and time (-t, and timeout); fills AB_RPS.
run_ab() {
    local out=$1 rc=0 complete failed non2xx
    shift
    # In ab, -t sets -n to 50000: -t must come first.
    timeout 150 ab -q -t 120 -n "$AB_REQUESTS" -c "$AB_CONCURRENCY" "$@" \
        "http://127.0.0.1:$APACHE_PORT/4k.bin" >"$out" 2>&1 || rc=$?
    if ((rc != 0)); then
        AB_RPS=n/a
        AB_DETAIL="ab: status $rc: $(tail -n 1 "$out")"
        return 1
    fi
    AB_RPS=$(awk '/^Requests per second:/ { print $4 }' "$out")
    complete=$(awk '/^Complete requests:/ { print $3 }' "$out")
    failed=$(awk '/^Failed requests:/ { print $3 }' "$out")
    non2xx=$(awk '/^Non-2xx responses:/ { print $3 }' "$out")
    AB_DETAIL="${complete:-?} complete, ${failed:-?} failed, ${non2xx:-0} non-2xx, ${AB_RPS:-?} req/s"
    [[ $complete == "$AB_REQUESTS" && $failed == 0 && -z $non2xx ]]
}

# fetch_mismatches URL FILE COUNT PARALLEL: GETs URL COUNT times from PARALLEL concurrent curl
# processes (each a new connection) and prints how many bodies differ from FILE (by sha256).
# ab only compares lengths; this compares the bytes.
fetch_mismatches() {
    local url=$1 file=$2 count=$3 par=$4 want ok
    want=$(sha256sum <"$file" | cut -d' ' -f1)
    # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
    ok=$(seq "$count" | timeout 180 xargs -P "$par" -n $((count / par / 2 + 1)) sh -c '
            url=$1; shift
            for _ in "$@"; do curl -s --max-time 30 "$url" | sha256sum; done' sh "$url" |
        grep -c "^$want " || true)
    echo $((count - ok))
}

apache_body_check() { # apache_body_check NAME COUNT PARALLEL
    local name=$1 count=$2 par=$3 f bad ok=1 detail=""
    for f in 4k.bin 100k.bin; do
        bad=$(fetch_mismatches "http://127.0.0.1:$APACHE_PORT/$f" "$WORK/htdocs/$f" "$count" "$par")
        detail+="${detail:+, }$f: $bad of $count wrong"
        ((bad == 0)) || ok=0
    done
    if ((ok)); then pass "$name" "$detail (sha256)"; else fail "$name" "$detail" "$APACHE_LOG"; fi
}

# The error log of a clean run: no crash of a worker, no child killed by a signal.
apache_log_check() { # apache_log_check NAME
    local bad
    # AH00052: a child killed by a signal; AH00045/AH00046: a child that ignored SIGTERM;
    # AH00276: the listener thread did not exit.
    bad=$(grep -E 'Segmentation fault|exit signal|crash|core dump|AH0005[2]|AH0004[56]|AH00276' \
        "$APACHE_LOG" 2>/dev/null | first_lines || true)
    if [[ -z $bad ]]; then pass "$1" "no crash in the error log"; else fail "$1" "$bad" "$APACHE_LOG"; fi
}

apache_checks() { # apache_checks MODE
    local mode=$1 n="apache[$1]" pid requests posted
    # One process (-X): 256 worker threads, a listener and the main thread.
    if ! apache_start "$mode" X -X; then
        fail "$n start -X" "not serving within 15 s" "$APACHE_OUT" "$APACHE_LOG"
        START_FAILED+=("$n")
        stop_after_failed_start "$SERVER_PID"
        return
    fi
    pid=$SERVER_PID
    pass "$n start -X" "pid $pid"
    requests=1
    if run_ab "$WORK/ab-k-$mode.txt" -k; then
        pass "$n ab -k -n $AB_REQUESTS -c $AB_CONCURRENCY" "$AB_DETAIL"
    else
        fail "$n ab -k -n $AB_REQUESTS -c $AB_CONCURRENCY" "$AB_DETAIL" \
            "$WORK/ab-k-$mode.txt" "$APACHE_LOG"
    fi
    requests=$((requests + AB_REQUESTS))
    if run_ab "$WORK/ab-$mode.txt"; then
        pass "$n ab -n $AB_REQUESTS -c $AB_CONCURRENCY" "$AB_DETAIL"
    else
        fail "$n ab -n $AB_REQUESTS -c $AB_CONCURRENCY" "$AB_DETAIL" \
            "$WORK/ab-$mode.txt" "$APACHE_LOG"
    fi
    requests=$((requests + AB_REQUESTS))
    apache_body_check "$n bodies, $CURL_FETCHES x $CURL_PARALLEL curl" "$CURL_FETCHES" "$CURL_PARALLEL"
    requests=$((requests + 2 * CURL_FETCHES))

    # SIGTERM: the main thread wakes the listener with pthread_kill (SIGHUP) and the workers
    # through the queue's condition variable, joins them and exits: status 0 within 10 s.
    if stop_server "$pid" 10; then
        pass "$n SIGTERM" "exited by itself, status 0"
    else
        fail "$n SIGTERM" "$(describe_status "$STOP_STATUS")" "$APACHE_OUT" "$APACHE_LOG"
    fi
    apache_log_check "$n error log"
    if [[ $mode != native ]]; then
        posted=$(stats_posted "$APACHE_STATS")
        if [[ $posted != none ]] && ((posted >= requests)); then
            pass "$n stats" "$posted calls posted for $requests requests"
        else
            fail "$n stats" "posted: $posted, want at least $requests (the requests served)" \
                "$APACHE_STATS"
        fi
    fi

    # The forking mode: a root parent and one www-data child with the threads.
    if ! apache_start "$mode" fork -DFOREGROUND; then
        fail "$n start -DFOREGROUND" "not serving within 15 s" "$APACHE_OUT" "$APACHE_LOG"
        stop_after_failed_start "$SERVER_PID"
        return
    fi
    pid=$SERVER_PID
    local kids=()
    mapfile -t kids < <(children_of "$pid")
    RUNNING+=("${kids[@]}")
    pass "$n start -DFOREGROUND" "parent $pid, children ${kids[*]:-none}"
    apache_body_check "$n -DFOREGROUND bodies, 200 x 16 curl" 200 16
    local ok=1 why="" k
    stop_server "$pid" 10 || {
        ok=0
        why="parent: $(describe_status "$STOP_STATUS")"
    }
    for k in "${kids[@]}"; do
        if alive "$k"; then
            kill -KILL "$k" 2>/dev/null || true
            ok=0
            why+="${why:+; }child $k still running: SIGKILLed"
        fi
        forget "$k"
    done
    if ((ok)); then pass "$n -DFOREGROUND SIGTERM" "parent and children exited, status 0"; else
        fail "$n -DFOREGROUND SIGTERM" "$why" "$APACHE_OUT" "$APACHE_LOG"
    fi
    apache_log_check "$n -DFOREGROUND error log"
}

apache_compare() { # apache_compare MODE ROUND: one sample of ab -k and ab
    local mode=$1 round=$2 pid
    if apache_start "$mode" "cmp$round" -X; then
        pid=$SERVER_PID
        run_ab "$WORK/cmp-ab-k.txt" -k || true
        record "apache ab -k c=$AB_CONCURRENCY (req/s)" "$mode" "$AB_RPS"
        run_ab "$WORK/cmp-ab.txt" || true
        record "apache ab c=$AB_CONCURRENCY (req/s)" "$mode" "$AB_RPS"
    else
        pid=$SERVER_PID
        record "apache ab -k c=$AB_CONCURRENCY (req/s)" "$mode" n/a
        record "apache ab c=$AB_CONCURRENCY (req/s)" "$mode" n/a
    fi
    stop_server "$pid" 10 ||
        echo "note: compare apache[$mode] round $round: $(describe_status "$STOP_STATUS") at SIGTERM"
}

# ---------------------------------------------------------------------------------------------
# MariaDB 10.11, one thread per connection.
MY=$WORK/mysql
MYCNF=$MY/my.cnf
mariadb_setup() {
    mkdir -p "$MY/data" "$MY/tmp"
    render "$TEMPLATES/my.cnf.in" "$MYCNF" "DIR=$WORK" "PORT=$MARIADB_PORT"
    # Once per run, natively: it bootstraps the system tables.
    if ! timeout 120 mariadb-install-db --defaults-file="$MYCNF" \
        --auth-root-authentication-method=normal --skip-test-db >"$MY/install.log" 2>&1; then
        tail -n 20 "$MY/install.log" >&2
        return 1
    fi
}
root_sql() { timeout 60 mariadb --no-defaults -S "$MY/mysqld.sock" -u root -N -B "$@"; }
user_sql() {
    timeout 120 mariadb --no-defaults -h 127.0.0.1 -P "$MARIADB_PORT" -u sbtest -psbtest \
        -N -B sbtest "$@"
}
SYSBENCH=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MARIADB_PORT"
    --mysql-user=sbtest --mysql-password=sbtest --mysql-db=sbtest --tables=4 --table-size=10000)

mariadb_prepare() { # the user and sysbench's tables, made again
    root_sql -e "CREATE DATABASE IF NOT EXISTS sbtest;
        CREATE USER IF NOT EXISTS sbtest@'127.0.0.1' IDENTIFIED BY 'sbtest';
        GRANT ALL ON sbtest.* TO sbtest@'127.0.0.1';" &&
        timeout 60 "${SYSBENCH[@]}" oltp_read_write cleanup &&
        timeout 120 "${SYSBENCH[@]}" oltp_read_write prepare
}

mariadb_start() { # mariadb_start MODE TAG
    MY_ERR=$WORK/mariadb-$2-$1.err
    MY_OUT=$WORK/mariadb-$2-$1.out
    MY_STATS=$WORK/stats-mariadb-$2-$1.txt
    rm -f "$MY_STATS"
    start_server "$1" "$MY_STATS" "$MY_OUT" mariadbd --defaults-file="$MYCNF" --log-error="$MY_ERR"
    # A hung server accepts on the socket but never answers: each probe is bounded too.
    wait_ready "$SERVER_PID" 30 timeout 5 mariadb --no-defaults -S "$MY/mysqld.sock" -u root \
        -e 'SELECT 1'
}

# A clean shutdown: status 0, "Shutdown complete" and no crash report in the error log.
mariadb_stop_check() { # mariadb_stop_check NAME PID
    local name=$1 pid=$2 bad
    if ! stop_server "$pid" 60; then
        fail "$name" "$(describe_status "$STOP_STATUS")" "$MY_OUT" "$MY_ERR"
        return
    fi
    bad=$(grep -E 'got signal|Segmentation|Assertion|\[ERROR\]' "$MY_ERR" | first_lines || true)
    if [[ -n $bad ]]; then
        fail "$name" "error log: $bad" "$MY_ERR"
    elif ! grep -q 'Shutdown complete' "$MY_ERR"; then
        fail "$name" "no 'Shutdown complete' in the error log" "$MY_ERR"
    else
        pass "$name" "status 0, shutdown complete"
    fi
}

# sysbench_check NAME WORKLOAD THREADS SECONDS: bounded by --time, --events and timeout.
# Deadlocks (1213) are retried by sysbench and counted as "ignored errors": allowed.
sysbench_check() {
    local name=$1 workload=$2 threads=$3 secs=$4 out=$WORK/sysbench-$2-$3.txt rc=0 tx bad
    timeout $((secs + 40)) "${SYSBENCH[@]}" --threads="$threads" --time="$secs" \
        --events=10000000 "$workload" run >"$out" 2>&1 || rc=$?
    tx=$(awk '/^ *transactions:/ { print $2 }' "$out")
    SYSBENCH_TPS=$(awk '/^ *transactions:/ { sub(/\(/, "", $3); print $3 }' "$out")
    bad=$(grep -E 'FATAL|ALERT|[Ee]rror [0-9]' "$out" | first_lines || true)
    SYSBENCH_TX=${tx:-0}
    local ignored detail
    ignored=$(awk '/ignored errors:/ { print $3 }' "$out")
    detail="${tx:-?} transactions (${SYSBENCH_TPS:-?}/s), ${ignored:-?} ignored errors"
    if ((rc == 0)) && [[ -z $bad && ${tx:-0} -gt 0 ]]; then
        pass "$name" "$detail"
    else
        fail "$name" "status $rc; ${bad:-$detail}" "$out" "$MY_ERR"
    fi
}

# The lost-write check: LOSTWRITE_CLIENTS concurrent client processes insert known rows and
# increment shared counters (some in transactions); the totals and the table checksums must
# equal those of reference tables filled by one statement each.
lostwrite_check() { # lostwrite_check NAME
    local name=$1 c i f pids=() rc bad=0 got want s_rows s_ref s_cnt s_cntref
    user_sql -e "
        DROP TABLE IF EXISTS lw_rows, lw_ref, lw_counters, lw_counters_ref;
        CREATE TABLE lw_rows (client INT NOT NULL, seq INT NOT NULL, val BIGINT NOT NULL,
                              PRIMARY KEY (client, seq)) ENGINE=InnoDB;
        CREATE TABLE lw_ref LIKE lw_rows;
        CREATE TABLE lw_counters (id INT NOT NULL PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB;
        CREATE TABLE lw_counters_ref LIKE lw_counters;
        INSERT INTO lw_counters SELECT seq, 0 FROM seq_0_to_$((LOSTWRITE_COUNTERS - 1));
        INSERT INTO lw_ref SELECT c.seq, i.seq, c.seq * 1000003 + i.seq * i.seq
            FROM seq_0_to_$((LOSTWRITE_CLIENTS - 1)) c, seq_0_to_$((LOSTWRITE_ROWS - 1)) i;
        INSERT INTO lw_counters_ref SELECT seq, $((LOSTWRITE_ROWS / LOSTWRITE_COUNTERS)) *
            $((LOSTWRITE_CLIENTS * (LOSTWRITE_CLIENTS + 1) / 2))
            FROM seq_0_to_$((LOSTWRITE_COUNTERS - 1));" || {
        fail "$name" "could not create the tables" "$MY_ERR"
        return
    }
    # Client c: row (c, i, c*1000003 + i*i) and counter i % COUNTERS += c + 1, for each i.
    for ((c = 0; c < LOSTWRITE_CLIENTS; c++)); do
        f=$WORK/lw-$c.sql
        for ((i = 0; i < LOSTWRITE_ROWS; i++)); do
            # Every fourth pair in one transaction, the others autocommitted.
            if ((i % 4 == 0)); then echo "BEGIN;"; fi
            echo "INSERT INTO lw_rows VALUES ($c, $i, $((c * 1000003 + i * i)));"
            echo "UPDATE lw_counters SET v = v + $((c + 1)) WHERE id = $((i % LOSTWRITE_COUNTERS));"
            if ((i % 4 == 0)); then echo "COMMIT;"; fi
        done >"$f"
    done
    for ((c = 0; c < LOSTWRITE_CLIENTS; c++)); do
        user_sql <"$WORK/lw-$c.sql" >"$WORK/lw-$c.out" 2>&1 &
        pids+=($!)
    done
    for c in "${!pids[@]}"; do
        rc=0
        wait "${pids[$c]}" || rc=$?
        if ((rc != 0)); then
            if ((bad == 0)); then echo "    client $c: status $rc: $(head -c 300 "$WORK/lw-$c.out")"; fi
            bad=$((bad + 1))
        fi
    done
    want="$((LOSTWRITE_CLIENTS * LOSTWRITE_ROWS)) \
$((LOSTWRITE_ROWS * 1000003 * LOSTWRITE_CLIENTS * (LOSTWRITE_CLIENTS - 1) / 2 + \
        LOSTWRITE_CLIENTS * (LOSTWRITE_ROWS - 1) * LOSTWRITE_ROWS * (2 * LOSTWRITE_ROWS - 1) / 6)) \
$((LOSTWRITE_ROWS * LOSTWRITE_CLIENTS * (LOSTWRITE_CLIENTS + 1) / 2))"
    got=$(user_sql -e "SELECT COUNT(*), SUM(val), (SELECT SUM(v) FROM lw_counters) FROM lw_rows" |
        tr '\t' ' ') || got="query failed"
    local sums
    sums=$(user_sql -e "CHECKSUM TABLE lw_rows, lw_ref, lw_counters, lw_counters_ref" |
        awk '{ print $2 }' | tr '\n' ' ') || sums="query failed"
    read -r s_rows s_ref s_cnt s_cntref <<<"$sums"
    local detail="count/sum(val)/sum(v) $got (want $want); checksum rows $s_rows (ref $s_ref), counters $s_cnt (ref $s_cntref)"
    if ((bad == 0)) && [[ $got == "$want" && -n $s_rows && $s_rows == "$s_ref" && -n $s_cnt &&
        $s_cnt == "$s_cntref" && $s_rows != NULL ]]; then
        pass "$name" "$detail"
    else
        fail "$name" "$bad clients failed; $detail" "$MY_ERR"
    fi
}

mariadb_checks() { # mariadb_checks MODE
    local mode=$1 n="mariadb[$1]" pid posted total=0
    if ! mariadb_start "$mode" check; then
        fail "$n start" "no answer to SELECT 1 within 30 s" "$MY_OUT" "$MY_ERR"
        START_FAILED+=("$n")
        stop_after_failed_start "$SERVER_PID"
        return
    fi
    pid=$SERVER_PID
    pass "$n start" "pid $pid"
    # The same data for every mode: sysbench's tables made again (and the user, the first time).
    if ! mariadb_prepare >"$WORK/sysbench-prepare-$mode.txt" 2>&1; then
        fail "$n sysbench prepare" "failed" "$WORK/sysbench-prepare-$mode.txt" "$MY_ERR"
    else
        pass "$n sysbench prepare" "4 tables x 10000 rows"
        sysbench_check "$n sysbench oltp_read_write 16 threads ${SYSBENCH_TIME}s" \
            oltp_read_write 16 "$SYSBENCH_TIME"
        total=$((total + SYSBENCH_TX))
        sysbench_check "$n sysbench oltp_read_write 64 threads ${SYSBENCH_TIME}s" \
            oltp_read_write 64 "$SYSBENCH_TIME"
        total=$((total + SYSBENCH_TX))
    fi
    lostwrite_check "$n lost writes ($LOSTWRITE_CLIENTS clients)"
    mariadb_stop_check "$n SIGTERM" "$pid"
    if [[ $mode != native ]]; then
        posted=$(stats_posted "$MY_STATS")
        # Each transaction is 18 queries, each at least a receive and a send.
        if [[ $posted != none ]] && ((posted >= total)); then
            pass "$n stats" "$posted calls posted for $total sysbench transactions"
        else
            fail "$n stats" "posted: $posted, want at least $total (the transactions)" \
                "$MY_STATS"
        fi
    fi
}

# Fresh tables for the comparison, made natively (a libflexsc check may have left none).
mariadb_compare_setup() {
    local ok=0
    if mariadb_start native prep; then
        mariadb_prepare >"$WORK/sysbench-prepare-compare.txt" 2>&1 && ok=1
    fi
    stop_server "$SERVER_PID" 60 || true
    ((ok)) || echo "note: compare mariadb: could not prepare the tables natively"
}

mariadb_compare() { # mariadb_compare MODE ROUND: sysbench oltp_read_only 16 threads
    local mode=$1 round=$2 pid tps=n/a
    if mariadb_start "$mode" "cmp$round"; then
        pid=$SERVER_PID
        # A short warm-up: the buffer pool starts cold in every instance.
        timeout 30 "${SYSBENCH[@]}" --threads=16 --time=2 --events=1000000 oltp_read_only run \
            >/dev/null 2>&1 || true
        if timeout 60 "${SYSBENCH[@]}" --threads=16 --time=10 --events=10000000 oltp_read_only \
            run >"$WORK/cmp-sysbench.txt" 2>&1; then
            tps=$(awk '/^ *transactions:/ { sub(/\(/, "", $3); print $3 }' "$WORK/cmp-sysbench.txt")
        fi
    else
        pid=$SERVER_PID
    fi
    record "mariadb oltp_read_only 16 thr (tps)" "$mode" "${tps:-n/a}"
    stop_server "$pid" 60 ||
        echo "note: compare mariadb[$mode] round $round: $(describe_status "$STOP_STATUS") at SIGTERM"
}

# ---------------------------------------------------------------------------------------------
# memcached 1.6: libevent, a fixed pool of 4 worker threads.
memcached_start() { # memcached_start MODE TAG
    MC_OUT=$WORK/memcached-$2-$1.out
    MC_STATS=$WORK/stats-memcached-$2-$1.txt
    rm -f "$MC_STATS"
    start_server "$1" "$MC_STATS" "$MC_OUT" memcached -u root -l 127.0.0.1 -p "$MEMCACHED_PORT" \
        -U 0 -t 4 -m 256 -c 4096
    wait_ready "$SERVER_PID" 15 port_open "$MEMCACHED_PORT"
}

# memcaslap bounded in time by its -t and by timeout (its -x would override -t, not add to it).
run_memcaslap() { # run_memcaslap OUT [ARGS...]; fills MC_TPS
    local out=$1
    shift
    MC_TPS=n/a
    timeout 60 memcaslap -s "127.0.0.1:$MEMCACHED_PORT" -T 2 -c 256 -t "$MEMCASLAP_TIME" "$@" \
        >"$out" 2>&1 || return 1
    MC_TPS=$(awk '/^Run time:/ { for (i = 1; i < NF; i++) if ($i == "TPS:") print $(i + 1) }' "$out")
    MC_OPS=$(awk '/^Run time:/ { for (i = 1; i < NF; i++) if ($i == "Ops:") print $(i + 1) }' "$out")
}

memcached_checks() { # memcached_checks MODE
    local mode=$1 n="memcached[$1]" pid out=$WORK/memcaslap-$1.txt rc=0 vf vm gm errs posted
    if ! memcached_start "$mode" check; then
        fail "$n start" "not listening within 15 s" "$MC_OUT"
        START_FAILED+=("$n")
        stop_after_failed_start "$SERVER_PID"
        return
    fi
    pid=$SERVER_PID
    pass "$n start" "pid $pid"
    # --verify=1.0: every get's value is checked against what was set.
    MC_OPS=0
    run_memcaslap "$out" --verify=1.0 || rc=$?
    vf=$(awk -F': *' '/^verify_failed:/ { print $2 }' "$out")
    vm=$(awk -F': *' '/^verify_misses:/ { print $2 }' "$out")
    gm=$(awk -F': *' '/^get_misses:/ { print $2 }' "$out")
    errs=$(grep -viE '^verify_failed' "$out" | grep -iE 'error|fail|abort|reset|timeout' |
        first_lines || true)
    local detail="${MC_OPS:-?} ops (${MC_TPS:-?}/s), verify_failed ${vf:-?}, verify_misses ${vm:-?}, get_misses ${gm:-?}"
    if ((rc == 0)) && [[ $vf == 0 && $vm == 0 && -z $errs && ${MC_OPS:-0} -gt 0 ]]; then
        pass "$n memcaslap -c 256 -t $MEMCASLAP_TIME --verify=1.0" "$detail"
    else
        fail "$n memcaslap -c 256 -t $MEMCASLAP_TIME --verify=1.0" "status $rc; $detail${errs:+; $errs}" \
            "$out" "$MC_OUT"
    fi
    if stop_server "$pid" 10; then
        pass "$n SIGTERM" "exited by itself, status 0"
    else
        fail "$n SIGTERM" "$(describe_status "$STOP_STATUS")" "$MC_OUT"
    fi
    if [[ $mode != native ]]; then
        posted=$(stats_posted "$MC_STATS")
        local_calls=$(stats_local "$MC_STATS")
        # About a read and a sendmsg per operation, through libflexsc: posted, or (the hybrid
        # rule, FLEXSC_DIRECT's default) run on the carrier because memcached's sockets are
        # O_NONBLOCK; its epoll_wait is posted. Ask for one routed call per operation.
        if [[ $posted != none && $local_calls != none ]] && ((posted > 0)) &&
            ((posted + local_calls >= ${MC_OPS:-0})); then
            pass "$n stats" "$posted calls posted and $local_calls run on the carriers for ${MC_OPS:-0} operations"
        else
            fail "$n stats" "posted: $posted, on the carriers: $local_calls, want at least ${MC_OPS:-0} together (the operations)" "$MC_STATS"
        fi
    fi
}

memcached_compare() { # memcached_compare MODE ROUND
    local mode=$1 round=$2 pid
    MC_TPS=n/a
    if memcached_start "$mode" "cmp$round"; then
        run_memcaslap "$WORK/cmp-memcaslap.txt" || true
    fi
    pid=$SERVER_PID
    record "memcached memcaslap c=256 (ops/s)" "$mode" "${MC_TPS:-n/a}"
    stop_server "$pid" 10 ||
        echo "note: compare memcached[$mode] round $round: $(describe_status "$STOP_STATUS") at SIGTERM"
}

# ---------------------------------------------------------------------------------------------
for port in "$APACHE_PORT" "$MARIADB_PORT" "$MEMCACHED_PORT"; do
    if port_open "$port"; then
        echo "servers.sh: 127.0.0.1:$port is already in use" >&2
        exit 2
    fi
done

echo "servers.sh: ${servers[*]} in mode(s) ${modes[*]}; work dir $WORK"
[[ ${modes[*]} == native ]] || echo "servers.sh: FLEXSC_BIN=$FLEXSC_BIN"
for server in "${servers[@]}"; do
    case $server in
        apache) apache_setup ;;
        mariadb) mariadb_setup || {
            fail "mariadb install-db" "mariadb-install-db failed"
            continue
        } ;;
    esac
    for mode in "${modes[@]}"; do
        "${server}_checks" "$mode"
    done
    if ((compare)); then
        # A server that did not start in its checks would only time out here again.
        cmp_modes=()
        for b in "${backends[@]}"; do
            if [[ " ${START_FAILED[*]} " == *" ${server}[$b] "* ]]; then
                echo "note: compare ${server}[$b]: skipped, it did not start in its check"
                COMPARE_SKIPPED+=("${server}[$b]")
            else
                cmp_modes+=("$b")
            fi
        done
        ((${#cmp_modes[@]})) || continue
        # Native and each backend alternately, so that drifts of the shared machine hit all.
        echo "servers.sh: comparing $server: native vs ${cmp_modes[*]}, $COMPARE_ROUNDS rounds"
        [[ $server != mariadb ]] || mariadb_compare_setup
        for ((round = 1; round <= COMPARE_ROUNDS; round++)); do
            for mode in native "${cmp_modes[@]}"; do
                "${server}_compare" "$mode" "$round"
            done
        done
    fi
done

if ((compare)); then
    echo
    echo "Throughput, median of $COMPARE_ROUNDS (native and libflexsc alternately):"
    printf '%-38s %-8s %12s %12s %7s\n' workload backend native flexsc ratio
    for row in "${COMPARE_ROWS[@]}"; do
        # shellcheck disable=SC2086 # the samples are a space-separated list
        nat=$(median ${COMPARE["$row|native"]})
        for b in "${backends[@]}"; do
            # shellcheck disable=SC2086
            fx=$(median ${COMPARE["$row|$b"]:-n/a})
            ratio=n/a
            if [[ $nat != n/a && $fx != n/a ]]; then
                ratio=$(awk -v a="$fx" -v b="$nat" 'BEGIN { printf "%.2f", a / b }')
            fi
            printf '%-38s %-8s %12s %12s %7s\n' "$row" "$b" "$nat" "$fx" "$ratio"
        done
    done
    ((${#COMPARE_SKIPPED[@]} == 0)) || echo "not compared (did not start): ${COMPARE_SKIPPED[*]}"
    echo "samples:"
    for k in "${!COMPARE[@]}"; do printf '  %-48s%s\n' "$k" "${COMPARE[$k]}"; done | sort
fi

echo
echo "servers.sh: $passes passed, $fails failed ($((SECONDS - start_time)) s)"
for f in "${failed[@]}"; do echo "  failed: $f"; done
((fails == 0))
