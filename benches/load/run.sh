#!/usr/bin/env bash
# End-to-end load benchmark of stuffgate on loopback, against nginx as the reference proxy.
#
#   benches/load/run.sh                 # build, run every variant RUNS times interleaved, print + write RESULTS.md
#   RUNS=5 DURATION=5 CONNS=32 NO_BUILD=1 benches/load/run.sh
#   STUFFGATE_BIN=/path/to/stuffgate STUFFGATE_REV="abc1234 + fix" POLICY_DEFAULT=/path/to/default.toml benches/load/run.sh
#   VARIANTS="sg-off-t1 sg-default-t1" benches/load/run.sh     # a subset (names: see `all_variants` below)
#
# Method (the most stable one on a 2-core machine): the proxy under test (stuffgate or nginx) is pinned to CPU 1;
# the load generator (wrk, one thread) and the upstream (nginx returning a fixed JSON answer) share CPU 0. The
# headline figure is the proxy's own CPU time per request: utime+stime deltas of the proxy process from
# /proc/PID/stat over the measured window, divided by the requests wrk completed in it. Every variant runs RUNS
# times, interleaved (variant A, B, C, … then again), with a fresh proxy process each time (so defense state starts
# empty), a 1 s warm-up, then DURATION seconds measured; the table shows the median of each column.
#
# Variants:
#   upstream-direct   wrk → upstream, no proxy (the ceiling of the load generator + upstream on CPU 0)
#   sg-off-tN         stuffgate, benches/load/policy-off.toml (no protected route), N worker threads; login requests
#   sg-route-only     stuffgate, benches/load/policy-route-only.toml (login protected, no defense), $VARIANT_THREADS
#                     thread(s): body read + parse, empty pipeline, observe, decision log — protection without defenses
#   sg-default-tN     stuffgate, policies/default.toml; login requests, each from a distinct address (X-Forwarded-For
#                     from trusted loopback) with a distinct account and password: every defense runs, none trips
#   sg-flood-tN       stuffgate, policies/default.toml; one address hammering /api/login → 429 from ip_rate
#   sg-off-t2-shared, sg-default-t2-shared   as the t2 variants with `runtime = "shared"` (one work-stealing service
#                     of 2 threads, pingora's default) instead of the default per-thread services on SO_REUSEPORT
#   Many cores: PROXY_CPU and LOAD_CPU take taskset lists, e.g. PROXY_CPU=0-3 LOAD_CPU=4-7 THREADS_MANY=4 adds
#                     sg-off-tM / sg-default-tM / sg-off-tM-shared variants with THREADS_MANY threads
#   sg-default-steady as sg-default-t$VARIANT_THREADS with max_tracked_keys = 16384 and a STEADY_WARMUP (4 s) warm-up
#                     that fills every bounded store to its cap: the steady state of a long-running gateway under
#                     distinct-key traffic (evicting, no longer growing), without waiting to fill 1M keys per store
#   sg-default-info   as sg-default-t$VARIANT_THREADS but log level "info": one JSON decision event per request
#   nginx-proxy       nginx (1 worker) as a plain reverse proxy, login requests
#   sg-off-get, nginx-proxy-get   the same two with wrk's plain `GET /` (no body, no Lua): the bare-proxy figure
#                     comparable with published passthrough numbers
#   nginx-flood       nginx with realip (trusted loopback) + limit_req 5 r/s burst 100 → 429 on the same flood
#   sg-refuse-newconn stuffgate, policies/default.toml, trusting no proxy: the loopback client itself floods
#                     /api/login with a new connection per request (Connection: close). ip_rate refuses it (429,
#                     connection closed), and its next connections are closed at accept while the limit holds
#                     ([connections] refuse_blocked_at_accept): the cost of refusing at accept
#   nginx-flood-newconn  nginx limit_req (as nginx-flood) refusing the same new-connection-per-request flood with 429
#   sg-refuse-keepalive  as sg-refuse-newconn over kept-alive connections (no Connection: close): the gateway closes
#                     the blocked address's connection after its 429 and refuses the reconnects at accept; compare
#                     with nginx-flood, which answers 429 on the kept-alive connections
#   In these three, a request is an attempt: wrk's completed requests plus its socket errors (a connection closed
#   at accept completes nothing); the CPU per request divides by attempts.
#   sg-default-redis  as sg-default-t1 with [shared_state] on (default share list) against a local redis-server
#                     pinned to the load CPU: account, pair and password state read from Redis in one round trip per
#                     login and written behind; the redis-server's own CPU per request, the round trips and the
#                     fallbacks are printed beside it (read_deadline_ms = SHARED_DEADLINE_MS, default 100)
#
# PERF_OUT=dir profiles the proxy over each measured window with `perf record -g` (perf must be installed) and writes
# dir/VARIANT-RUN.flat.txt (self time by symbol) and dir/VARIANT-RUN.children.txt (time including callees). perf
# samples at 999 Hz on the proxy's CPU, which adds a few percent to the CPU figures of those runs.
# STRACE_OUT=dir counts the proxy's system calls over each measured window (`strace -c -f`, which slows the proxy
# several-fold: use it for calls per request, not CPU) into dir/VARIANT-RUN.syscalls.txt, with wrk's request count.
# ALLOC_OUT=dir counts the gateway's allocator calls over each measured window (uprobes on mimalloc's entry points in
# the binary, `perf probe`, as root) into dir/VARIANT-RUN.allocs.txt, per request. Each probe traps into the kernel:
# those runs serve ~30x fewer requests and their CPU figures mean nothing; the counts per request stand.
# FAULTS=1 prints the proxy's minor page faults per request of each run (memory it touched for the first time).
# PERF_KEEP=1 keeps each run's perf.data beside them (dir/VARIANT-RUN.perf.data) for `perf report -i`.
# PERF_CALLGRAPH=dwarf unwinds through Rust code built without frame pointers (heavier: fewer requests per run).
# HALT_POLL_NS=200000 (a KVM guest with cpuidle-haltpoll, as root) lets idle CPUs poll that long before halting, for
# the run, and puts the old value back after. With the default 0 an idle vCPU halts, and whoever wakes a task on it
# pays for an interrupt to a halted vCPU (a VM exit). The proxy pays it in every send that wakes wrk or the upstream,
# and pays it more often the slower it is, since the load CPU then idles more: on this 2-core VM ~7 us of
# sg-default-t1's ~38 us, ~1 us of sg-off-t1's, none of nginx's (benches/RESULTS.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${STUFFGATE_BIN:-$ROOT/target/release/stuffgate}
POLICY_DEFAULT_SET=${POLICY_DEFAULT:+1}
POLICY_DEFAULT=${POLICY_DEFAULT:-$ROOT/policies/default.toml}
POLICY_OFF=$HERE/policy-off.toml
POLICY_ROUTE_ONLY=$HERE/policy-route-only.toml
RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-32}
VARIANT_THREADS=${VARIANT_THREADS:-${INFO_THREADS:-1}}   # threads of the single-setting variants (route-only, steady, info)
STEADY_WARMUP=${STEADY_WARMUP:-4}
LOG_LEVEL=${LOG_LEVEL:-warn}
RESULTS=${RESULTS:-$ROOT/benches/RESULTS.md}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-18181}
PROXY_PORT=${PROXY_PORT:-18180}
ADMIN_PORT=${ADMIN_PORT:-18190}
THREADS_MANY=${THREADS_MANY:-}
all_variants="upstream-direct sg-off-t1 sg-off-t2 sg-off-t2-shared sg-route-only sg-default-t1 sg-default-t2 sg-default-t2-shared sg-default-steady sg-flood-t1 sg-flood-t2 sg-default-info nginx-proxy nginx-flood sg-off-get nginx-proxy-get sg-default-redis sg-refuse-newconn nginx-flood-newconn sg-refuse-keepalive"
[[ -z $THREADS_MANY ]] || all_variants+=" sg-off-tM sg-default-tM sg-off-tM-shared"
VARIANTS_SET=${VARIANTS:+1}
VARIANTS=${VARIANTS:-$all_variants}
COMMAND="$0${*:+ $*}"
for v in RUNS DURATION WARMUP CONNS VARIANT_THREADS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done

need() { command -v "$1" >/dev/null || { echo "run.sh: $1 is missing ($2)" >&2; exit 2; }; }
need wrk "apt-get install wrk"
need nginx "apt-get install nginx-light"
need taskset "util-linux"
need curl "apt-get install curl"
need python3 "the summary is computed with python3"
need ss "iproute2"

if [[ -z ${NO_BUILD:-} && -z ${STUFFGATE_BIN:-} ]]; then
  echo "== cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x $BIN ]] || { echo "run.sh: no stuffgate binary at $BIN (build it, or set STUFFGATE_BIN)" >&2; exit 2; }
"$BIN" check "$POLICY_OFF" "$POLICY_ROUTE_ONLY" "$POLICY_DEFAULT" >/dev/null
if [[ -n ${ALLOC_OUT:-} ]]; then   # allocator entry points of the binary under test, as uprobes (see ALLOC_OUT above)
  need perf "apt-get install linux-perf"
  perf probe -q -d 'sg_alloc:*' >/dev/null 2>&1 || true
  for probe in malloc=mi_malloc_aligned zalloc=mi_zalloc_aligned realloc=mi_realloc_aligned free=mi_free; do
    perf probe -q -x "$BIN" --add "sg_alloc:$probe" || { echo "run.sh: cannot probe ${probe#*=} in $BIN" >&2; exit 2; }
  done
fi

HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_WAS=
if [[ -n ${HALT_POLL_NS:-} ]]; then
  [[ $HALT_POLL_NS =~ ^[0-9]+$ ]] || { echo "run.sh: HALT_POLL_NS must be a whole number of ns" >&2; exit 2; }
  [[ -w $HALT_POLL ]] || { echo "run.sh: HALT_POLL_NS needs $HALT_POLL (a KVM guest with cpuidle-haltpoll, as root)" >&2; exit 2; }
fi

WORK=$(mktemp -d /tmp/stuffgate-load.XXXXXX)
mkdir -p "$WORK"/tmp-{body,proxy,fastcgi,uwsgi,scgi}
PIDS=()
cleanup() {
  local pid
  [[ -z ${ALLOC_OUT:-} ]] || perf probe -q -d 'sg_alloc:*' >/dev/null 2>&1 || true
  [[ -z $HALT_POLL_WAS ]] || echo "$HALT_POLL_WAS" >"$HALT_POLL" || true
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n ${HALT_POLL_NS:-} ]]; then   # set once cleanup is in place to put it back
  HALT_POLL_WAS=$(cat "$HALT_POLL")
  echo "$HALT_POLL_NS" >"$HALT_POLL"
fi

port_busy() { ss -Hltn "sport = :$1" | grep -q .; }
for p in "$UPSTREAM_PORT" "$PROXY_PORT" "$ADMIN_PORT"; do
  if port_busy "$p"; then
    echo "run.sh: port $p is taken (a stale gateway or nginx?):" >&2
    ss -Hltnp "sport = :$p" >&2
    exit 2
  fi
done

fill() { # template out key=value...
  local template=$1 out=$2
  shift 2
  cp "$template" "$out"
  local kv
  for kv in "$@"; do
    python3 - "$out" "${kv%%=*}" "${kv#*=}" <<'PY'
import sys
path, key, value = sys.argv[1:]
text = open(path).read().replace("@" + key + "@", value)
open(path, "w").write(text)
PY
  done
}

# Start a process pinned to a CPU; sets STARTED_PID.
start_pinned() { # cpu logfile cmd...
  local cpu=$1 log=$2
  shift 2
  taskset -c "$cpu" "$@" >"$log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}

stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local i
  for i in "${!PIDS[@]}"; do [[ ${PIDS[$i]} == "$1" ]] && unset 'PIDS[i]'; done
  PIDS=("${PIDS[@]}")
  for i in $(seq 50); do port_busy "$PROXY_PORT" || return 0; sleep 0.1; done
  echo "run.sh: port $PROXY_PORT still taken after stopping pid $1" >&2
  exit 1
}

# Wait until `pid` itself listens on `port` (pingora retries bind() silently when a port is taken).
wait_listening() { # pid port
  local i
  for i in $(seq 100); do
    kill -0 "$1" 2>/dev/null || { echo "run.sh: pid $1 exited before listening on :$2" >&2; return 1; }
    if ss -Hltnp "sport = :$2" | grep -q "pid=$1,"; then return 0; fi
    sleep 0.05
  done
  echo "run.sh: pid $1 is not listening on :$2 after 5 s" >&2
  ss -Hltnp "sport = :$2" >&2
  return 1
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
minor_faults() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $8}'; }

status_of() { # method path [xff]
  local xff=${3:-203.0.113.7}
  curl -s -o /dev/null -w '%{http_code}' -X "$1" "http://127.0.0.1:$PROXY_PORT$2" \
    -H 'content-type: application/json' -H "x-forwarded-for: $xff" \
    --data '{"email":"check@example.com","password":"check-password"}'
}

# Upstream: one nginx worker on the load CPU, for the whole run.
fill "$HERE/upstream.nginx.conf" "$WORK/upstream.conf" "WORK=$WORK" "UPSTREAM_PORT=$UPSTREAM_PORT"
start_pinned "$LOAD_CPU" "$WORK/upstream.out" nginx -e "$WORK/upstream.error.log" -p "$WORK" -c "$WORK/upstream.conf"
UPSTREAM_PID=$STARTED_PID
wait_listening "$UPSTREAM_PID" "$UPSTREAM_PORT"

# The data files the default policy's geo and breach defenses need, as shipped in the repository (a checkout
# without them gets no [geoip]/[breach] section, as the policy of that time needed none).
EXTRA=""
[[ ! -f $ROOT/geoip/country.mmdb ]] || EXTRA+=$'[geoip]\ncountry_db = "'"$ROOT"$'/geoip/country.mmdb"\n'
[[ ! -f $ROOT/policies/data/common-passwords.bloom ]] ||
  EXTRA+=$'[breach]\npassword_filter = "'"$ROOT"$'/policies/data/common-passwords.bloom"\n'
EXTRA=${GATEWAY_EXTRA-$EXTRA}
gateway_config() { # name policy threads level [max_tracked_keys] [runtime] [trusted_proxies]
  fill "$HERE/gateway.toml.in" "$WORK/$1.toml" "PROXY_PORT=$PROXY_PORT" "ADMIN_PORT=$ADMIN_PORT" \
    "UPSTREAM_PORT=$UPSTREAM_PORT" "POLICY=$2" "THREADS=$3" "LOG_LEVEL=$4" "MAX_KEYS=${5:-1000000}" "EXTRA=$EXTRA" \
    "RUNTIME=${6:-per_thread}" "TRUSTED=${7-\"127.0.0.1/32\"}"
  "$BIN" check "$WORK/$1.toml" >/dev/null
}
gateway_config off-t1 "$POLICY_OFF" 1 "$LOG_LEVEL"
gateway_config off-t2 "$POLICY_OFF" 2 "$LOG_LEVEL"
gateway_config default-t1 "$POLICY_DEFAULT" 1 "$LOG_LEVEL"
gateway_config default-t2 "$POLICY_DEFAULT" 2 "$LOG_LEVEL"
gateway_config default-direct-t1 "$POLICY_DEFAULT" 1 "$LOG_LEVEL" 1000000 per_thread ""
gateway_config default-info "$POLICY_DEFAULT" "$VARIANT_THREADS" info
gateway_config route-only "$POLICY_ROUTE_ONLY" "$VARIANT_THREADS" "$LOG_LEVEL"
gateway_config default-steady "$POLICY_DEFAULT" "$VARIANT_THREADS" "$LOG_LEVEL" 16384
# Shared state: a redis-server on the load CPU for the whole run, when a variant needs it.
REDIS_PORT=${REDIS_PORT:-18379}
REDIS_PID=""
if [[ " $VARIANTS " == *" sg-default-redis "* ]]; then
  need redis-server "apt-get install redis-server"
  start_pinned "$LOAD_CPU" "$WORK/redis.out" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$WORK"
  REDIS_PID=$STARTED_PID
  wait_listening "$REDIS_PID" "$REDIS_PORT"
  export STUFFGATE_BENCH_HASH_KEY=bench-secret-shared-by-the-fleet
  EXTRA_PLAIN=$EXTRA
  # A closed-loop load saturates both CPUs: with the 3 ms default a round trip queued behind 32 connections' work
  # misses its deadline and the breaker sheds Redis (as it should in production), which would measure local state
  # only. SHARED_DEADLINE_MS (default 100) keeps every round trip in, to measure what sharing costs.
  EXTRA=$'privacy = { hash_key_env = "STUFFGATE_BENCH_HASH_KEY" }\n[shared_state]\nurl = "redis://127.0.0.1:'"$REDIS_PORT"$'/0"\nread_deadline_ms = '"${SHARED_DEADLINE_MS:-100}"$'\n'"$EXTRA_PLAIN"
  gateway_config default-redis "$POLICY_DEFAULT" 1 "$LOG_LEVEL"
  EXTRA=$EXTRA_PLAIN
fi
gateway_config off-t2-shared "$POLICY_OFF" 2 "$LOG_LEVEL" 1000000 shared
gateway_config default-t2-shared "$POLICY_DEFAULT" 2 "$LOG_LEVEL" 1000000 shared
if [[ -n $THREADS_MANY ]]; then
  gateway_config off-tM "$POLICY_OFF" "$THREADS_MANY" "$LOG_LEVEL"
  gateway_config default-tM "$POLICY_DEFAULT" "$THREADS_MANY" "$LOG_LEVEL"
  gateway_config off-tM-shared "$POLICY_OFF" "$THREADS_MANY" "$LOG_LEVEL" 1000000 shared
fi
fill "$HERE/proxy.nginx.conf" "$WORK/nginx-proxy.conf" "WORK=$WORK" "UPSTREAM_PORT=$UPSTREAM_PORT" \
  "PROXY_PORT=$PROXY_PORT" "LIMIT_ZONE=" "LIMIT_REALIP=" "LIMIT_REQ="
fill "$HERE/proxy.nginx.conf" "$WORK/nginx-flood.conf" "WORK=$WORK" "UPSTREAM_PORT=$UPSTREAM_PORT" \
  "PROXY_PORT=$PROXY_PORT" \
  "LIMIT_ZONE=limit_req_zone \$binary_remote_addr zone=login:10m rate=5r/s; limit_req_status 429; limit_req_log_level info;" \
  "LIMIT_REALIP=set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;" \
  "LIMIT_REQ=limit_req zone=login burst=100 nodelay;"

# variant → (proxy kind, config, wrk script, expected status of a probe after the run)
describe() {
  case $1 in
    upstream-direct) echo "none - login.lua -" ;;
    sg-off-get) echo "gateway $WORK/off-t1.toml - 200" ;;
    nginx-proxy-get) echo "nginx $WORK/nginx-proxy.conf - 200" ;;
    sg-off-t1) echo "gateway $WORK/off-t1.toml login.lua 401" ;;
    sg-off-t2) echo "gateway $WORK/off-t2.toml login.lua 401" ;;
    sg-off-t2-shared) echo "gateway $WORK/off-t2-shared.toml login.lua 401" ;;
    sg-default-t2-shared) echo "gateway $WORK/default-t2-shared.toml login.lua 401" ;;
    sg-off-tM) echo "gateway $WORK/off-tM.toml login.lua 401" ;;
    sg-default-tM) echo "gateway $WORK/default-tM.toml login.lua 401" ;;
    sg-off-tM-shared) echo "gateway $WORK/off-tM-shared.toml login.lua 401" ;;
    sg-route-only) echo "gateway $WORK/route-only.toml login.lua 401" ;;
    sg-default-t1) echo "gateway $WORK/default-t1.toml login.lua 401" ;;
    sg-default-t2) echo "gateway $WORK/default-t2.toml login.lua 401" ;;
    sg-flood-t1) echo "gateway $WORK/default-t1.toml flood.lua 429" ;;
    sg-flood-t2) echo "gateway $WORK/default-t2.toml flood.lua 429" ;;
    sg-default-info) echo "gateway $WORK/default-info.toml login.lua 401" ;;
    sg-default-steady) echo "gateway $WORK/default-steady.toml login.lua 401" ;;
    nginx-proxy) echo "nginx $WORK/nginx-proxy.conf login.lua 401" ;;
    nginx-flood) echo "nginx $WORK/nginx-flood.conf flood.lua 429" ;;
    sg-refuse-newconn) echo "gateway $WORK/default-direct-t1.toml flood-newconn.lua 000" ;;
    sg-refuse-keepalive) echo "gateway $WORK/default-direct-t1.toml flood-direct.lua 000" ;;
    nginx-flood-newconn) echo "nginx $WORK/nginx-flood.conf flood-newconn.lua 429" ;;
    sg-default-redis) echo "gateway $WORK/default-redis.toml login.lua 401" ;;
    *) echo "run.sh: unknown variant $1 (known: $all_variants)" >&2; exit 2 ;;
  esac
}
for v in $VARIANTS; do describe "$v" >/dev/null; done

SAMPLES=$WORK/samples.tsv
: >"$SAMPLES"

measure() { # variant run
  local variant=$1 run=$2 kind config script expect pid="" url port
  read -r kind config script expect < <(describe "$variant")
  local target=/api/login wrk_script=()
  if [[ $script == - ]]; then target=/; else wrk_script=(-s "$HERE/$script"); fi
  port=$PROXY_PORT
  case $kind in
    gateway)
      start_pinned "$PROXY_CPU" "$WORK/$variant.$run.log" "$BIN" run --config "$config"
      pid=$STARTED_PID ;;
    nginx)
      start_pinned "$PROXY_CPU" "$WORK/$variant.$run.log" nginx -e "$WORK/proxy.error.log" -p "$WORK" -c "$config"
      pid=$STARTED_PID ;;
    none) port=$UPSTREAM_PORT ;;
  esac
  [[ -z $pid ]] || wait_listening "$pid" "$port"
  url="http://127.0.0.1:$port"
  if [[ -n $pid && $run == 1 && $script == login.lua ]]; then
    local failed ok
    failed=$(status_of POST /api/login)
    ok=$(status_of POST '/api/login?ok=1')
    [[ $failed == 401 && $ok == 200 ]] || { echo "run.sh: $variant: login probe answered $failed/$ok, expected 401/200" >&2; exit 1; }
  fi
  local warmup=$WARMUP
  # The steady-state variant first fills every bounded store to its (small) cap, so the run measures eviction, not growth.
  [[ $variant != sg-default-steady ]] || warmup=$((WARMUP > STEADY_WARMUP ? WARMUP : STEADY_WARMUP))
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${warmup}s" "${wrk_script[@]}" "$url$target" >/dev/null
  local before after out redis_before=""
  [[ -z $pid ]] || before=$(cpu_ticks "$pid")
  local faults_before=""
  [[ -z $pid ]] || faults_before=$(minor_faults "$pid")
  [[ $variant != sg-default-redis ]] || redis_before=$(cpu_ticks "$REDIS_PID")
  local perf_pid=""
  if [[ -n ${PERF_OUT:-} && -n $pid ]]; then
    perf record -q -F 999 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$pid" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local alloc_pid=""
  if [[ -n ${ALLOC_OUT:-} && $kind == gateway ]]; then
    mkdir -p "$ALLOC_OUT"
    perf stat -x, -e 'sg_alloc:*' -p "$pid" -o "$WORK/allocs.csv" -- sleep "$DURATION" >/dev/null 2>&1 &
    alloc_pid=$!
  fi
  local strace_pid=""
  if [[ -n ${STRACE_OUT:-} && -n $pid ]]; then
    mkdir -p "$STRACE_OUT"
    timeout -s INT "$DURATION" strace -c -f -p "$pid" -o "$STRACE_OUT/$variant-$run.syscalls.txt" >/dev/null 2>&1 &
    strace_pid=$!
  fi
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${wrk_script[@]}" "$url$target")
  echo "$out" >"$WORK/wrk-$variant-$run.txt"
  [[ -z $pid ]] || after=$(cpu_ticks "$pid")
  local requests   # what wrk completed in the measured window
  requests=$(echo "$out" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  if [[ -n ${FAULTS:-} && -n $pid ]]; then   # page faults per request (memory first touched, e.g. growing stores)
    awk -v a="$faults_before" -v b="$(minor_faults "$pid")" -v r="${requests:-0}" -v v="$variant" \
      'BEGIN { printf "run.sh: %s: %.3f minor page faults per request\n", v, r ? (b - a) / r : 0 }' >&2
  fi
  if [[ -n $alloc_pid ]]; then   # allocator calls per request
    wait "$alloc_pid" || true
    awk -F, -v r="${requests:-0}" '/sg_alloc:/ { sub("sg_alloc:", "", $3); printf "%s %.1f per request\n", $3, r ? $1 / r : 0 }
      END { print "requests: " r }' "$WORK/allocs.csv" >"$ALLOC_OUT/$variant-$run.allocs.txt"
  fi
  if [[ -n $strace_pid ]]; then   # syscalls per request: divide strace's counts by wrk's requests
    wait "$strace_pid" || true
    echo "requests: $requests" >>"$STRACE_OUT/$variant-$run.syscalls.txt"
  fi
  if [[ -n $redis_before ]]; then
    local shared
    shared=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
      /^stuffgate_shared_store_seconds_count/ { trips += $NF } /^stuffgate_store_fallbacks_total/ { fallbacks += $NF }
      /^stuffgate_shared_writes_total/ { writes += $NF } /^stuffgate_shared_writes_dropped_total/ { dropped += $NF }
      END { printf "%d round trips, %d fallbacks, %d writes, %d dropped", trips, fallbacks, writes, dropped }')
    echo "  ($variant run $run: redis-server CPU $(( ($(cpu_ticks "$REDIS_PID") - redis_before) * 1000000 / CLK_TCK / (requests > 0 ? requests : 1) )) µs per request; $shared)"
  fi
  if [[ -n $pid && ( $expect == 429 || $expect == 000 ) ]]; then
    local probe flooder=198.51.100.66
    # The direct floods come from the loopback client itself (nginx reads it through realip; stuffgate, trusting
    # no proxy here, ignores the header and refuses the loopback address at accept: curl gets no answer, 000).
    [[ $script == flood.lua ]] || flooder=127.0.0.1
    probe=$(status_of POST /api/login "$flooder" || true)
    # Under ALLOC_OUT the trapping probes slow the flood to a few hundred requests a second, at the edge of the
    # limit's refill, so a request may pass: accept that there.
    [[ $probe == "$expect" || -n ${ALLOC_OUT:-} ]] || { echo "run.sh: $variant: the flood address got $probe after the run, expected $expect" >&2; exit 1; }
  fi
  [[ -z $pid ]] || stop "$pid"
  if [[ -n $perf_pid ]]; then   # after the probes: reporting takes seconds, in which limits refill
    wait "$perf_pid" || true
    mkdir -p "$PERF_OUT"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort sym -g none 2>/dev/null | grep -v '^$' | head -150 \
      >"$PERF_OUT/$variant-$run.flat.txt" || true   # head closes the pipe early
    perf report -i "$WORK/perf.data" --stdio --children --sort sym -g caller,0.5,callee,function,percent \
      --percent-limit 2 2>/dev/null | grep -v '^$' | head -1500 >"$PERF_OUT/$variant-$run.children.txt" || true
    [[ -z ${PERF_KEEP:-} ]] || cp "$WORK/perf.data" "$PERF_OUT/$variant-$run.perf.data"
  fi
  WRK_OUT=$out python3 - "$variant" "$run" "${before:-}" "${after:-}" "$CLK_TCK" "$SAMPLES" "$(cat /proc/loadavg)" <<'PY'
import os, re, sys
variant, run, before, after, tck, samples, loadavg = sys.argv[1:]
out = os.environ["WRK_OUT"]
def us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text or "")
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)] if m else float("nan")
def find(pattern, cast=str, default=None):
    m = re.search(pattern, out)
    return cast(m.group(1)) if m else default
completed = find(r"(\d+) requests in", int, 0)
# A connection closed at accept completes no request: wrk counts it as a socket error (connect, read or write)
# and reconnects. Each is a refused attempt, so the per-request figures divide by attempts.
errors_m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
unanswered = sum(int(errors_m.group(i)) for i in (1, 2, 3)) if errors_m else 0
requests = completed + unanswered
if not requests:
    sys.exit(f"run.sh: {variant} run {run}: no requests completed; wrk said:\n{out}")
rps = find(r"Requests/sec:\s+([\d.]+)", float, float("nan")) * requests / max(completed, 1)
p50 = us(find(r"50%\s+(\S+)"))
p99 = us(find(r"99%\s+(\S+)"))
non2xx = find(r"Non-2xx or 3xx responses: (\d+)", int, 0) + unanswered
errors = re.search(r"Socket errors: (.*)", out)
cpu = (int(after) - int(before)) / int(tck) * 1e6 / requests if before else float("nan")
with open(samples, "a") as f:
    f.write(f"{variant}\t{run}\t{rps:.0f}\t{cpu:.2f}\t{p50:.0f}\t{p99:.0f}\t{100 * non2xx / requests:.1f}\t{errors.group(1) if errors else ''}\t{loadavg.split()[0]}\n")
print(f"  {variant:<16} run {run}: {rps:9.0f} req/s  {cpu:6.2f} µs CPU/req  p50 {p50:6.0f} µs  p99 {p99:6.0f} µs  non-2xx {100*non2xx/requests:5.1f}%  load {loadavg.split()[0]}" + (f"  socket errors: {errors.group(1)}" if errors else ""))
PY
}

echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "== proxy on CPU $PROXY_CPU; wrk -t1 -c$CONNS + upstream nginx on CPU $LOAD_CPU; ${WARMUP}s warm-up + ${DURATION}s per run, $RUNS runs per variant, interleaved"
for run in $(seq "$RUNS"); do
  echo "-- round $run/$RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for v in $VARIANTS; do measure "$v" "$run"; done
done

TABLE=$(python3 - "$SAMPLES" "$VARIANTS" "$VARIANT_THREADS" <<'PY'
import statistics, sys
samples, order, info_threads = sys.argv[1], sys.argv[2].split(), sys.argv[3]
rows = {}
for line in open(samples):
    v, run, rps, cpu, p50, p99, non2xx, errors, load = line.rstrip("\n").split("\t")
    rows.setdefault(v, []).append((float(rps), float(cpu), float(p50), float(p99), float(non2xx), float(load)))
def med(xs):
    xs = [x for x in xs if x == x]  # drop NaN (a latency wrk did not print)
    return statistics.median(xs) if xs else float("nan")
print("| variant | requests/s | proxy CPU µs/request | spread (min–max) | p50 latency | p99 latency | non-2xx | runs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for v in order:
    if v not in rows:
        continue
    r = rows[v]
    cpu = [x[1] for x in r]
    cpu_ok = [c for c in cpu if c == c]
    summary[v] = med(cpu_ok) if cpu_ok else None
    cpu_text = f"{med(cpu_ok):.2f}" if cpu_ok else "–"
    spread = f"{min(cpu_ok):.2f}–{max(cpu_ok):.2f}" if cpu_ok else "–"
    print(f"| {v} | {med([x[0] for x in r]):,.0f} | {cpu_text} | {spread} | {med([x[2] for x in r]):,.0f} µs | {med([x[3] for x in r]):,.0f} µs | {med([x[4] for x in r]):.0f}% | {len(r)} |")
def ratio(a, b, label):
    if summary.get(a) and summary.get(b):
        print(f"\n- {label}: {summary[a]:.2f} / {summary[b]:.2f} µs = **{summary[a] / summary[b]:.2f}×**", end="")
for t in ("t1", "t2"):
    ratio(f"sg-default-{t}", f"sg-off-{t}", f"default policy vs defenses off ({t}), CPU per login request (target ≤ 1.10×)")
    ratio(f"sg-flood-{t}", "nginx-proxy", f"blocked flood request ({t}) vs nginx proxied request (target < 1.00×)")
    ratio(f"sg-flood-{t}", "nginx-flood", f"blocked flood request ({t}) vs nginx limit_req rejection")
    ratio(f"sg-off-{t}", "nginx-proxy", f"defenses off ({t}) vs nginx proxy")
ratio("sg-refuse-newconn", "nginx-flood-newconn", "blocked flood, a new connection per request: refused at accept vs nginx limit_req (target ≤ 0.80×)")
ratio("sg-refuse-keepalive", "nginx-flood", "blocked flood over kept-alive connections: closed after its 429, reconnects refused at accept, vs nginx limit_req")
ratio("sg-off-get", "nginx-proxy-get", "defenses off vs nginx, plain GET /")
ratio("sg-default-info", f"sg-default-t{info_threads}", "decision log at level info vs warn")
ratio("sg-route-only", f"sg-off-t{info_threads}", "protected route without defenses vs defenses off")
ratio("sg-default-steady", f"sg-off-t{info_threads}", f"default policy at steady state (stores full, evicting; t{info_threads}) vs defenses off")
ratio("sg-default-redis", "sg-default-t1", "default policy with shared state (local Redis) vs without (t1), gateway CPU per login")
print()
PY
)
echo
echo "$TABLE"

MACHINE="$(nproc) CPUs · $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) · kernel $(uname -r) · $(free -g | awk '/Mem:/{print $2}') GiB RAM"
[[ ! -r $HALT_POLL ]] || MACHINE+=" · guest halt polling $(cat "$HALT_POLL") ns"
REV="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD -- src policies 2>/dev/null || echo ' + uncommitted changes in src/ or policies/')"
REV=${STUFFGATE_REV:-$REV}   # say what STUFFGATE_BIN was built from
VARIANTS_ARG=""
[[ -z $VARIANTS_SET ]] || VARIANTS_ARG="VARIANTS=\"$VARIANTS\" "
SECTION=$(cat <<EOF
<!-- load:begin (written by benches/load/run.sh; edit outside these markers) -->
## End-to-end load (benches/load/run.sh)

$(date -u '+%Y-%m-%d %H:%M UTC') · $MACHINE · stuffgate $REV · binary \`${BIN#$ROOT/}\` · $(nginx -v 2>&1 | sed 's/.*: //') · $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)

Command: \`RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS VARIANT_THREADS=$VARIANT_THREADS ${STUFFGATE_BIN:+STUFFGATE_BIN=$STUFFGATE_BIN }${POLICY_DEFAULT_SET:+POLICY_DEFAULT=$POLICY_DEFAULT }${VARIANTS_ARG}${COMMAND}\`
Proxy pinned to CPU $PROXY_CPU; wrk (1 thread, $CONNS connections) and the upstream (nginx, 1 worker, fixed JSON answers) on CPU $LOAD_CPU.
Median of $RUNS interleaved runs of ${DURATION} s (after ${WARMUP} s warm-up), a fresh proxy process per run. *Proxy CPU* = the proxy
process's utime+stime over the run / requests completed. Login requests: distinct address (X-Forwarded-For from
trusted loopback), account and password per request, 9 in 10 answered 401 and 1 in 10 200 by the upstream. Flood:
one address, same body, answered 429 by the proxy. Log level "$LOG_LEVEL" except sg-default-info ("info", JSON to a file).

$TABLE
<!-- load:end -->
EOF
)
python3 - "$RESULTS" "$SECTION" <<'PY'
import os, re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read() if os.path.exists(path) else "# stuffgate benchmark results\n"
pattern = re.compile(r"<!-- load:begin.*?<!-- load:end -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
echo
echo "written to ${RESULTS#$ROOT/}"
