#!/usr/bin/env bash
# bench/run.sh: the whole-system benchmark of chatd against the floor
# (bench/floor), as docs/benchmarks.md reports it.
#
# It builds chatd, floor and chatload into a temporary folder, starts its
# own redis-server on a free loopback port (no persistence), and puts each
# server through the same loads, each load on a fresh server process and an
# emptied Redis:
#
#   chat        1,000 sessions, a message each, its reply, a pause of 1 s,
#               for 15 s: latency, messages/s, CPU and Redis reads per
#               message; three rounds on each server, interleaved;
#   saturation  200 sessions without pause for 10 s: messages/s; three
#               rounds likewise;
#   idle        10,000 sessions held 5 s: RSS per session, and Redis's
#               used_memory per session (read here while they are held);
#   login       chatd only: 1,000 logins at once of distinct unknown
#               identifiers (401 expected): statuses and peak RSS.
#
# chatd runs the demo as shipped with CHAT_MAX_SESSIONS_PER_USER=0
# CHAT_RATE_PER_S=0 CHAT_USER_RATE_PER_MIN=0 and a user made with
# `chatd users add`. The JSON results are copied to bench/results/latest/,
# `go run ./bench/report` rewrites the whole-system section of
# docs/benchmarks.md from them, and the section is printed. Everything the
# script started is stopped when it exits, whatever happens; the temporary
# folder (logs, text reports) is kept when it fails.
#
# It exits 1 when a chatload run failed or could not be made (the table
# is still written when the results allow), 0 otherwise; a budget that is
# not met does not change the exit code: the table says so.
#
# For a quick try, smaller loads and other destinations can be given in the
# environment (the defaults are those of the published figures):
# BENCH_CHAT_SESSIONS, BENCH_CHAT_SECONDS, BENCH_SAT_SESSIONS,
# BENCH_SAT_SECONDS, BENCH_ROUNDS (3), BENCH_IDLE_SESSIONS, BENCH_IDLE_SECONDS, BENCH_LOGINS,
# BENCH_OUT (bench/results/latest) and BENCH_DOC (docs/benchmarks.md).
# BENCH_DATABASE_URL runs chatd beside that PostgreSQL database (its
# DATABASE_URL, migrated on start), whose users and threads the runs
# replace: give it a database of its own.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/go/bin"

chat_sessions=${BENCH_CHAT_SESSIONS:-1000}
chat_seconds=${BENCH_CHAT_SECONDS:-15}
sat_sessions=${BENCH_SAT_SESSIONS:-200}
sat_seconds=${BENCH_SAT_SECONDS:-10}
idle_sessions=${BENCH_IDLE_SESSIONS:-10000}
idle_seconds=${BENCH_IDLE_SECONDS:-5}
logins=${BENCH_LOGINS:-1000}
rounds=${BENCH_ROUNDS:-3}
database_url=${BENCH_DATABASE_URL:-}
out_dir=${BENCH_OUT:-bench/results/latest}
doc=${BENCH_DOC:-docs/benchmarks.md}

# The servers run as shipped: no configuration from this shell.
while read -r name; do
  unset "$name"
done < <(compgen -e | grep -E '^(CHAT_|FLOOR_|REDIS_URL$)' || true)

for cmd in go redis-server redis-cli; do
  command -v "$cmd" >/dev/null || { echo "run.sh: $cmd is needed" >&2; exit 2; }
done

# Each idle session is a socket in chatload and one in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle_sessions + 1000)) ]; then
  echo "run.sh: $idle_sessions idle sessions need more open files than ulimit -n $(ulimit -n)" >&2
  exit 2
fi

started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/chatd-bench.XXXXXX")
bin=$work/bin
results=$work/results
mkdir -p "$bin" "$results"

# The processes this script started and has not stopped yet.
redis_pid=""
server_pid=""
load_pid=""

# stop_pid PID: SIGTERM, up to 30 s to exit, then SIGKILL; reaps it.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "$load_pid" "$server_pid" "$redis_pid"; do
    [ -n "$pid" ] && stop_pid "$pid"
  done
  if [ "$rc" = 0 ]; then
    rm -rf "$work"
  else
    echo "run.sh: exit $rc; logs and reports kept in $work" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port prints a loopback port that nothing listens on, below the
# ephemeral range that the sessions' own ports come from.
free_port() {
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((10000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "run.sh: no free port" >&2
  return 1
}

# wait_port PORT PID NAME: waits until PORT accepts connections, failing
# when PID exits first or after 30 s.
wait_port() {
  local port=$1 pid=$2 name=$3 i
  for ((i = 0; i < 300; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: $name exited before listening; its log:" >&2
      tail -n 20 "$work/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "run.sh: $name does not listen on $port after 30 s" >&2
  return 1
}

echo "== building chatd, floor and chatload"
go build -o "$bin/chatd" ./cmd/chatd
go build -o "$bin/floor" ./bench/floor
go build -o "$bin/chatload" ./cmd/chatload

echo "== starting redis-server"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
wait_port "$redis_port" "$redis_pid" redis
redis_url="redis://127.0.0.1:$redis_port/0"
rcli() { redis-cli -p "$redis_port" "$@"; }

# used_memory prints Redis's INFO memory used_memory, in bytes.
used_memory() {
  rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory://p'
}

identifier=bench@example.com
password=bench-password-$RANDOM$RANDOM
namespace=bench:

# start_server NAME: a fresh floor or chatd on a free port, on an emptied
# Redis (chatd with its user); sets server_pid and server_port.
start_server() {
  local name=$1
  rcli FLUSHALL >/dev/null
  server_port=$(free_port)
  case $name in
  floor)
    "$bin/floor" -addr "127.0.0.1:$server_port" -redis-url "$redis_url" -namespace "$namespace" \
      >"$work/floor.log" 2>&1 &
    ;;
  chatd)
    local db=()
    if [ -n "$database_url" ]; then
      db=(DATABASE_URL="$database_url" CHAT_MIGRATE=true)
      env "${db[@]}" "$bin/chatd" migrate >/dev/null
      # The user of an earlier run goes, with its threads.
      env "${db[@]}" REDIS_URL="$redis_url" CHAT_NAMESPACE=$namespace \
        "$bin/chatd" users delete --identifier "$identifier" >/dev/null 2>&1 || true
    fi
    printf '%s\n' "$password" | env "${db[@]}" REDIS_URL="$redis_url" CHAT_NAMESPACE=$namespace \
      "$bin/chatd" users add --identifier "$identifier" --password-stdin >/dev/null
    env "${db[@]}" CHAT_ADDR=127.0.0.1:$server_port REDIS_URL="$redis_url" CHAT_NAMESPACE=$namespace \
      CHAT_MAX_SESSIONS_PER_USER=0 CHAT_RATE_PER_S=0 CHAT_USER_RATE_PER_MIN=0 \
      "$bin/chatd" >"$work/chatd.log" 2>&1 &
    ;;
  esac
  server_pid=$!
  wait_port "$server_port" "$server_pid" "$name"
}

stop_server() {
  stop_pid "$server_pid"
  server_pid=""
}

failed_loads=()

# run_load SERVER LOAD ARGS...: runs chatload against a fresh SERVER with
# ARGS (after the shared ones, so that they win), keeping its JSON result
# as SERVER-LOAD.json; an idle load also gets SERVER-idle-redis-memory.json.
run_load() {
  local server=$1 load=$2 rc=0
  shift 2
  local base=$results/$server-$load
  echo "== $server: $load"
  start_server "$server"
  local args=(-url "http://127.0.0.1:$server_port" -identifier "$identifier" -password "$password"
    -server-pid "$server_pid" -redis-pid "$redis_pid" -redis-url "$redis_url" -json "$base.json" "$@")
  if [ "$load" = idle ]; then
    local before after
    before=$(used_memory)
    "$bin/chatload" "${args[@]}" >"$base.txt" 2>"$base.log" &
    load_pid=$!
    # Redis's memory while the sessions are held: after chatload's
    # progress line says they are.
    until grep -Eq '^chatload: +[0-9.]+s idle +opened=' "$base.log"; do
      kill -0 "$load_pid" 2>/dev/null || break
      sleep 0.2
    done
    after=$(used_memory)
    wait "$load_pid" || rc=$?
    load_pid=""
    if [[ $before =~ ^[0-9]+$ && $after =~ ^[0-9]+$ ]] &&
      grep -Eq '^chatload: +[0-9.]+s idle +opened=' "$base.log"; then
      printf '{"used_memory_before": %d, "used_memory_after": %d}\n' "$before" "$after" \
        >"$results/$server-idle-redis-memory.json"
    fi
  else
    "$bin/chatload" "${args[@]}" >"$base.txt" 2>"$base.log" || rc=$?
  fi
  stop_server
  cat "$base.txt"
  if [ "$rc" != 0 ]; then
    echo "run.sh: chatload exited $rc on $server $load; its last lines:" >&2
    tail -n 5 "$base.log" >&2
    failed_loads+=("$server-$load")
  fi
}

# The chat and saturation loads run in rounds, the floor and chatd one
# after the other, the first of the two taking turns from round to round:
# on a shared machine a server's CPU per message moves by half from one
# minute to the next, and the drift falls on both. The report takes, for
# each figure, the round whose ratio is the median.
for ((round = 1; round <= rounds; round++)); do
  order=(floor chatd)
  if ((round % 2 == 0)); then
    order=(chatd floor)
  fi
  for server in "${order[@]}"; do
    run_load "$server" "chat-$round" -mode chat -sessions "$chat_sessions" -pause 1s -duration "${chat_seconds}s"
  done
  for server in "${order[@]}"; do
    run_load "$server" "saturation-$round" -mode chat -sessions "$sat_sessions" -pause 0 -duration "${sat_seconds}s"
  done
done
for server in floor chatd; do
  run_load "$server" idle -mode idle -sessions "$idle_sessions" -duration "${idle_seconds}s"
done
# The floor does not hash passwords: logins are chatd's alone.
run_load chatd login -mode login -sessions "$logins" -identifier 'load-%d@example.com' -password x \
  -login-expect 401

json_string() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
  printf '{\n'
  printf '  "date": "%s",\n' "$(date -u +%Y-%m-%d)"
  printf '  "nproc": %d,\n' "$(nproc)"
  printf '  "cpu_model": %s,\n' "$(json_string "$cpu_model")"
  printf '  "mem_total_kib": %d,\n' "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
  printf '  "go_version": %s,\n' "$(json_string "$(go env GOVERSION)")"
  printf '  "redis_version": %s,\n' "$(json_string "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')")"
  printf '  "hash_workers": %d,\n' "$(nproc)"
  if [ -n "$database_url" ]; then
    printf '  "command": "BENCH_DATABASE_URL=%s bench/run.sh",\n' "${database_url//\"/}"
  else
    printf '  "command": "bench/run.sh",\n'
  fi
  printf '  "commit": %s,\n' "$(json_string "$(git describe --always --dirty 2>/dev/null || true)")"
  printf '  "load_seconds": %d,\n' "$(($(date +%s) - started))"
  printf '  "durations_s": {"chat": %d, "saturation": %d, "idle": %d},\n' \
    "$chat_seconds" "$sat_seconds" "$idle_seconds"
  printf '  "rounds": %d\n' "$rounds"
  printf '}\n'
} >"$results/run.json"

stop_pid "$redis_pid"
redis_pid=""

echo "== results in $out_dir, table in $doc"
mkdir -p "$out_dir"
rm -f "$out_dir"/*.json
cp "$results"/*.json "$out_dir"/
table=$(go run ./bench/report -results "$out_dir" -doc "$doc")
echo
echo "$table"
echo
echo "run.sh: took $(($(date +%s) - started)) s"
if [ ${#failed_loads[@]} -gt 0 ]; then
  echo "run.sh: chatload failed on: ${failed_loads[*]}" >&2
  exit 1
fi
