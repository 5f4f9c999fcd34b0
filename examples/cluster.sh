#!/usr/bin/env bash
# Two stuffgate gateways sharing one Redis, behind a round-robin HAProxy (or nginx), in front of the demo login API:
# watch a limit hold across gateways, then kill Redis and watch both fall back to their local limits.
#
#   examples/cluster.sh            # start everything, run the walkthrough, keep running until Ctrl-C
#   examples/cluster.sh --once     # run the walkthrough and stop (CI-friendly smoke test)
#
# Needs redis-server and haproxy (or nginx) from Debian: apt-get install redis-server haproxy
# Ports (override with the variables): front 18080, gateways 18001/18002 (admin 19001/19002), demo API 18081,
# Redis 16379. STUFFGATE_BIN picks the binary (default: target/release, else target/debug, else cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

FRONT_PORT=${FRONT_PORT:-18080}
GW_PORTS=(${GW1_PORT:-18001} ${GW2_PORT:-18002})
ADMIN_PORTS=(${ADMIN1_PORT:-19001} ${ADMIN2_PORT:-19002})
API_PORT=${API_PORT:-18081}
REDIS_PORT=${REDIS_PORT:-16379}
ONCE=""
[[ ${1:-} == --once ]] && ONCE=1

need() { command -v "$1" >/dev/null || { echo "cluster.sh: $1 is missing ($2)" >&2; exit 2; }; }
need redis-server "apt-get install redis-server"
need redis-cli "apt-get install redis-tools"
need curl "apt-get install curl"
# A port something already listens on would be talked to as if it were ours: refuse to start instead.
for port in "$FRONT_PORT" "${GW_PORTS[@]}" "${ADMIN_PORTS[@]}" "$API_PORT" "$REDIS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "cluster.sh: 127.0.0.1:$port is already in use (find the process with \`ss -ltnp\`, or pick other ports:" \
      "FRONT_PORT, GW1_PORT, GW2_PORT, ADMIN1_PORT, ADMIN2_PORT, API_PORT, REDIS_PORT)" >&2
    exit 2
  fi
done
FRONT=""
if command -v haproxy >/dev/null; then FRONT=haproxy; elif command -v nginx >/dev/null; then FRONT=nginx; else
  echo "cluster.sh: neither haproxy nor nginx is installed (apt-get install haproxy)" >&2; exit 2
fi

BIN=${STUFFGATE_BIN:-}
if [[ -z $BIN ]]; then
  if [[ -x target/release/stuffgate ]]; then BIN=target/release/stuffgate
  elif [[ -x target/debug/stuffgate ]]; then BIN=target/debug/stuffgate
  else cargo build --release --quiet; BIN=target/release/stuffgate; fi
fi

WORK=$(mktemp -d /tmp/stuffgate-cluster.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url what
  local i
  for i in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "cluster.sh: $2 did not come up ($1)" >&2; exit 1
}

start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --maxmemory 256mb --maxmemory-policy volatile-ttl >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  local i
  for i in $(seq 100); do [[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null) == PONG ]] && return 0; sleep 0.05; done
  echo "cluster.sh: redis-server did not start (see $WORK/redis.log)" >&2; exit 1
}
start_redis

"$BIN" demo-api --listen "127.0.0.1:$API_PORT" --users 200 >"$WORK/api.log" 2>&1 &
PIDS+=($!)

# Every gateway of a fleet keys shared state under the same secret.
export STUFFGATE_HASH_KEY=${STUFFGATE_HASH_KEY:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
for i in 0 1; do
  cat >"$WORK/gateway$i.toml" <<EOF
listen = ["127.0.0.1:${GW_PORTS[$i]}"]
admin = "127.0.0.1:${ADMIN_PORTS[$i]}"
upstream = { address = "127.0.0.1:$API_PORT" }
policies = ["$ROOT/policies/default.toml"]
trusted_proxies = ["127.0.0.1"]     # the front (and this demo's curl) may say who the client is
threads = 1
watch_interval_secs = 0
log = { format = "text", level = "warn" }
privacy = { hash_key_env = "STUFFGATE_HASH_KEY" }

[shared_state]
url = "redis://127.0.0.1:$REDIS_PORT/0"
key_prefix = "sg:v2:"
read_deadline_ms = 3

[geoip]
country_db = "$ROOT/geoip/country.mmdb"

[breach]
password_filter = "$ROOT/policies/data/common-passwords.bloom"
EOF
  "$BIN" check "$WORK/gateway$i.toml" >/dev/null
  "$BIN" run --config "$WORK/gateway$i.toml" >"$WORK/gateway$i.log" 2>&1 &
  PIDS+=($!)
done

if [[ $FRONT == haproxy ]]; then
  cat >"$WORK/front.cfg" <<EOF
global
  maxconn 1024
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend front
  bind 127.0.0.1:$FRONT_PORT
  default_backend gateways
backend gateways
  balance roundrobin
  http-reuse never            # one connection per request, so round robin alternates per login
  server gw1 127.0.0.1:${GW_PORTS[0]}
  server gw2 127.0.0.1:${GW_PORTS[1]}
EOF
  haproxy -f "$WORK/front.cfg" -db >"$WORK/front.log" 2>&1 &
else
  mkdir -p "$WORK/nginx"
  cat >"$WORK/front.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/front.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  upstream gateways { server 127.0.0.1:${GW_PORTS[0]}; server 127.0.0.1:${GW_PORTS[1]}; }
  server { listen 127.0.0.1:$FRONT_PORT; location / { proxy_pass http://gateways; proxy_set_header X-Forwarded-For \$http_x_forwarded_for; } }
}
EOF
  nginx -p "$WORK" -c "$WORK/front.conf" >/dev/null 2>&1 &
fi
PIDS+=($!)

for i in 0 1; do wait_http "http://127.0.0.1:${ADMIN_PORTS[$i]}/healthz" "gateway $((i + 1))"; done
wait_http "http://127.0.0.1:$FRONT_PORT/" "the $FRONT front"

login() { # address email password → "status via gateway"
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FRONT_PORT/api/login" \
    -H 'content-type: application/json' -H "x-forwarded-for: $1" --data "{\"email\":\"$2\",\"password\":\"$3\"}"
}
metric() { # admin-port name
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'
}
store_up() { metric "$1" "stuffgate_shared_store_up "; }
for i in $(seq 100); do
  [[ $(store_up "${ADMIN_PORTS[0]}") == 1 && $(store_up "${ADMIN_PORTS[1]}") == 1 ]] && break; sleep 0.1
done

cat <<EOF
stuffgate cluster: $FRONT (round robin) on http://127.0.0.1:$FRONT_PORT → gateways :${GW_PORTS[0]} and :${GW_PORTS[1]}
  → demo API :$API_PORT; shared state in redis-server :$REDIS_PORT; logs and configs in $WORK
  metrics: http://127.0.0.1:${ADMIN_PORTS[0]}/metrics  http://127.0.0.1:${ADMIN_PORTS[1]}/metrics

1. Guessing one account from one address: the default policy allows 10 logins per account a minute and 10
   failures per account and address. The front alternates the gateways, so each sees only 5 or 6 of these 11
   guesses — and the shared state still blocks the 11th:
EOF
printf '   '
for i in $(seq 11); do printf '%s ' "$(login 203.0.113.7 alice@example.com "guess-$i")"; sleep 0.02; done
echo
echo "   (401 = reached the app, 428 = challenged by stuffgate, 429 = blocked by stuffgate; each decision counts the"
echo "    failures seen through both gateways)"
echo "   gateway 1 blocked $(metric "${ADMIN_PORTS[0]}" 'stuffgate_requests_total{route="login",verdict="block"}'), gateway 2 blocked $(metric "${ADMIN_PORTS[1]}" 'stuffgate_requests_total{route="login",verdict="block"}')"
echo
echo "2. What Redis holds: keyed hashes, each with a TTL (no account or address in clear):"
redis-cli -p "$REDIS_PORT" --scan --pattern 'sg:*' | head -4 | while read -r key; do
  echo "   $key  ($(redis-cli -p "$REDIS_PORT" TYPE "$key"), ttl $(redis-cli -p "$REDIS_PORT" TTL "$key") s)"
done
echo "   $(redis-cli -p "$REDIS_PORT" DBSIZE) keys, $(redis-cli -p "$REDIS_PORT" INFO memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r') used"
echo
echo "3. kill -9 of Redis: the gateways answer on, each on its local limits (fleet-wide up to 2× the limit):"
kill -9 "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
printf '   '
for i in $(seq 8); do printf '%s ' "$(login 198.51.100.$i bob@example.jp "nope-$i")"; done
echo
echo "   fallbacks: gateway 1 $(metric "${ADMIN_PORTS[0]}" stuffgate_store_fallbacks_total), gateway 2 $(metric "${ADMIN_PORTS[1]}" stuffgate_store_fallbacks_total); store up: $(store_up "${ADMIN_PORTS[0]}")/$(store_up "${ADMIN_PORTS[1]}")"
echo
echo "4. Redis back on the same port (empty: it kept nothing): sharing resumes within seconds."
start_redis
for i in $(seq 100); do
  [[ $(store_up "${ADMIN_PORTS[0]}") == 1 && $(store_up "${ADMIN_PORTS[1]}") == 1 ]] && break; sleep 0.1
done
echo "   store up: $(store_up "${ADMIN_PORTS[0]}")/$(store_up "${ADMIN_PORTS[1]}") after $((i / 10)).$((i % 10)) s"
printf '   '
for i in $(seq 11); do printf '%s ' "$(login 203.0.113.8 carol@example.com "guess-$i")"; sleep 0.02; done
echo
[[ -n $ONCE ]] && exit 0
echo
echo "Running; try it yourself (Ctrl-C stops everything):"
echo "  curl -i http://127.0.0.1:$FRONT_PORT/api/login -H 'content-type: application/json' -d '{\"email\":\"alice@example.com\",\"password\":\"correct horse battery staple\"}'"
wait
