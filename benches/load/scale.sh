#!/usr/bin/env bash
# Many-core scaling of stuffgate beside nginx and HAProxy — the many-core mode of the shared bundle
# (../shared/perf/scale_multicore.sh), with stuffgate's runtime layouts and the flood variants added.
#
#   cargo build --release && ../shared/perf/make_devbundle.sh && cp benches/load/scale.sh .devbundle/scale.sh
#   then, on a machine with ≥ 16 cores, from the checkout root:   NS="1 2 4 8" bash .devbundle/scale.sh
#
# Layout: the proxy under test pinned to cores 0..N-1, the upstream (nginx, 4 workers) to UPC (default 8-11), wrk
# (4 threads, 64 connections per proxy core) to WRC (default 12-15). Per point: WU s warm-up, D s measured; the proxy's
# CPU time per request comes from /proc (utime+stime of the proxy and its children over the measured window).
# Variants (VARIANTS=...):
#   nginx, haproxy            the reference proxies (nginx: N workers, upstream keepalive; HAProxy: nbthread N)
#   sg-off, sg-default        stuffgate, benches/load/policy-off.toml / policies/default.toml, threads = N, the
#                             default runtime layout (N one-thread services on SO_REUSEPORT)
#   sg-off-shared, sg-default-shared   the same with runtime = "shared" (one work-stealing service of N threads,
#                             pingora's default layout)
#   nginx-flood, sg-flood     one address flooding /api/login (flood.lua): nginx realip + limit_req 5 r/s burst 100
#                             against stuffgate's default policy (ip_rate) — both answer 429
# Prints: variant N req/s CPU-µs/req p99 reqs non2xx
# PERF_OUT=dir (with perf in the bundle's bin/): profile each stuffgate point over its measured window; writes
#   dir/VARIANT-N.{flat,children,threads}.txt (perf report by symbol, and CPU ticks per thread of the proxy)
# HALT_POLL_NS=200000 (a KVM guest with cpuidle-haltpoll, as root): idle CPUs poll that long before halting, for the
#   run (see benches/load/run.sh: with halting, every send that wakes an idle core's wrk or upstream pays a VM exit,
#   and a slower proxy leaves those cores idle more often). The setting in force is printed either way.
set -u
HP=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [ -n "${HALT_POLL_NS:-}" ] && [ -w $HP ]; then HPW=$(cat $HP); echo "$HALT_POLL_NS" > $HP; trap 'echo "$HPW" > $HP' EXIT; fi
[ ! -r $HP ] || echo "# guest halt polling: $(cat $HP) ns"
B=$(cd "$(dirname "$0")" && pwd); D=${D:-5}; NS=${NS:-"1 2 4 8"}; REPS=${REPS:-1}
L=$B/lib; LD="$L/ld-linux-x86-64.so.2 --library-path $L"
W=/tmp/scale; rm -rf $W; mkdir -p $W/t/{body,proxy,fastcgi,uwsgi,scgi}
TS() { $LD $B/bin/taskset "$@"; }   # not for background processes: $! would be a subshell
up() { for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
ticks() { # sum utime+stime of pid and its direct children
  local t=0 p f
  for f in /proc/[0-9]*/stat; do
    p=$(sed 's/.*) //' $f 2>/dev/null) || continue
    set -- $p
    if [ "${f#/proc/}" = "$ROOTPID/stat" ] || [ "$2" = "$ROOTPID" ]; then t=$((t + ${12} + ${13})); fi
  done; echo $t; }
thread_ticks() { # tid name utime+stime for every thread of the proxy
  local f p
  for f in /proc/$ROOTPID/task/*/stat; do p=$(cat $f 2>/dev/null) || continue; n=${p#*(}; n=${n%%)*}; p=${p##*) }; set -- $p
    t=${f%/stat}; echo "${t##*/} ${n// /_} $((${12} + ${13}))"; done; }
common="user root root; daemon off; error_log $W/err.log warn; events { worker_connections 8192; }"
http_common="access_log off; keepalive_requests 10000000; client_body_temp_path $W/t/body; proxy_temp_path $W/t/proxy; fastcgi_temp_path $W/t/fastcgi; uwsgi_temp_path $W/t/uwsgi; scgi_temp_path $W/t/scgi;"
cat > $W/up.conf <<EOT
worker_processes 4; pid $W/up.pid; $common
http { $http_common server { listen 127.0.0.1:18181 backlog=8192 reuseport; default_type application/json;
  location = /api/login { if (\$arg_ok) { return 200 '{"ok":true}'; } return 401 '{"error":"invalid_credentials"}'; }
  location / { return 200 '{"ok":true}'; } } }
EOT
$LD $B/bin/taskset -c ${UPC:-8-11} $LD $B/bin/nginx -c $W/up.conf -e $W/up.err > $W/up.out 2>&1 & UPP=$!
up 18181 || exit 1
mkproxy() { # n
for lim in "" flood; do
  zone=""; req=""; realip=""
  if [ -n "$lim" ]; then
    zone="limit_req_zone \$binary_remote_addr zone=login:10m rate=5r/s; limit_req_status 429; limit_req_log_level info;"
    realip="set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;"; req="limit_req zone=login burst=100 nodelay;"
  fi
  cat > $W/px$lim.conf <<EOT
worker_processes $1; pid $W/px.pid; $common
http { $http_common $zone upstream app { server 127.0.0.1:18181; keepalive 256; }
  server { listen 127.0.0.1:18180 backlog=8192 reuseport; proxy_http_version 1.1; proxy_set_header Connection ""; $realip
  location / { $req proxy_pass http://app; } } }
EOT
done
for pol in off default; do for layout in per_thread shared; do
  P=$B/data/policy-off.toml; [ $pol = default ] && P=$B/data/default.toml
  cat > $W/sg-$pol-$layout.toml <<EOT
listen = ["127.0.0.1:18180"]
admin = "127.0.0.1:18190"
upstream = { address = "127.0.0.1:18181" }
policies = ["$P"]
trusted_proxies = ["127.0.0.1/32"]
threads = $1
runtime = "$layout"
max_tracked_keys = 1000000
watch_interval_secs = 0
log = { format = "json", level = "warn" }
[geoip]
country_db = "$B/data/country.mmdb"
[breach]
password_filter = "$B/data/common-passwords.bloom"
EOT
done; done; }
echo "variant N req_s cpu_us_per_req p99 reqs non2xx"
for rep in $(seq $REPS); do for n in $NS; do mkproxy $n; for v in ${VARIANTS:-nginx haproxy sg-off sg-default sg-off-shared sg-default-shared}; do
  cores="0-$((n-1))"; script=$B/data/login.lua
  case $v in
    nginx|nginx-flood) conf=$W/px.conf; [ $v = nginx-flood ] && { conf=$W/pxflood.conf; script=$B/data/flood.lua; }
      $LD $B/bin/taskset -c $cores $LD $B/bin/nginx -c $conf -e $W/px.err > $W/px.out 2>&1 & ROOTPID=$! ;;
    haproxy) printf 'global\n  nbthread %s\n  maxconn 9000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:18180\n  default_backend be\nbackend be\n  http-reuse always\n  server u 127.0.0.1:18181\n' $n > $W/hap.cfg
      $LD $B/bin/taskset -c $cores $LD $B/bin/haproxy -db -f $W/hap.cfg > $W/hap.log 2>&1 & ROOTPID=$! ;;
    sg-*) case $v in
        sg-flood) conf=$W/sg-default-per_thread.toml; script=$B/data/flood.lua ;;
        *-shared) p=${v#sg-}; conf=$W/sg-${p%-shared}-shared.toml ;;
        *) conf=$W/$v-per_thread.toml ;;
      esac
      $LD $B/bin/taskset -c $cores $LD $B/bin/stuffgate run --config $conf > $W/$v.log 2>&1 & ROOTPID=$! ;;
  esac
  up 18180 || { tail -5 $W/$v.log $W/px.err 2>/dev/null; kill $ROOTPID; continue; }; sleep 0.3
  C=$((64 * n))
  TS -c ${WRC:-12-15} $LD $B/bin/wrk -t4 -c$C -d${WU:-2}s -s $script http://127.0.0.1:18180/api/login > /dev/null 2>&1
  threads0=$(thread_ticks)
  if [ -n "${PERF_OUT:-}" ] && [ "${v#sg-}" != "$v" ]; then  # profile stuffgate over the measured window
    $LD $B/bin/perf record -q -F 999 -g -p $ROOTPID -o $W/perf.data -- sleep $D > /dev/null 2>&1 & PERFPID=$!
  fi
  t0=$(ticks); TS -c ${WRC:-12-15} $LD $B/bin/wrk -t4 -c$C -d${D}s --latency -s $script http://127.0.0.1:18180/api/login > $W/wrk.out 2>&1; t1=$(ticks)
  if [ -n "${PERF_OUT:-}" ] && [ "${v#sg-}" != "$v" ]; then
    wait $PERFPID; mkdir -p $PERF_OUT
    $LD $B/bin/perf report -i $W/perf.data --stdio --no-children --sort sym -g none 2>/dev/null | grep -v '^$' | head -100 > $PERF_OUT/$v-$n.flat.txt
    $LD $B/bin/perf report -i $W/perf.data --stdio --children --sort sym -g caller,0.5,callee,function,percent --percent-limit 3 2>/dev/null | grep -v '^$' | head -600 > $PERF_OUT/$v-$n.children.txt
    echo "$threads0" > $W/threads0; thread_ticks | python3 -c "
import sys
a={l.split()[0]:(l.split()[1],int(l.split()[2])) for l in open('$W/threads0') if l.strip()}
for l in sys.stdin:
    tid,name,t=l.split(); d=int(t)-a.get(tid,(name,0))[1]
    if d: print(name, tid, d)" > $PERF_OUT/$v-$n.threads.txt
  fi
  rps=$(awk '/Requests\/sec/{print $2}' $W/wrk.out); p99=$(awk '/ 99%/{print $2}' $W/wrk.out)
  reqs=$(awk '/requests in/{print $1}' $W/wrk.out); non=$(awk '/Non-2xx/{print $5}' $W/wrk.out)
  us=$(python3 -c "print(round(($t1-$t0)/100.0*1e6/max(1,$reqs),1))")
  echo "$v $n $rps $us $p99 $reqs ${non:-0}"
  case $v in sg-*) kill -INT $ROOTPID;; *) kill $ROOTPID;; esac; wait $ROOTPID 2>/dev/null; for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18180) 2>/dev/null || break; sleep 0.1; done
done; done; done
kill $UPP; wait $UPP 2>/dev/null
