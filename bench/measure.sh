#!/usr/bin/env bash
# Mide cada escenario contra el chat (en memoria y, donde se indica, con Redis) y contra la base.
# Uso: cargo build --release -p chat -p chat-bench && bash bench/measure.sh [escenario…]
# Deja los informes Markdown y las líneas JSON en bench/results/ (o en OUT=…).
# Arranca y para su propio chat (y su propio redis-server en el puerto 6390): no deja nada vivo.
set -euo pipefail

BIN_DIR=${BIN_DIR:-target/release}
OUT=${OUT:-bench/results}
PORT=${PORT:-18700}
REDIS_PORT=${REDIS_PORT:-6390}
ADMIN_PASSWORD=admin-de-chat-bench
# NICE=-10 da prioridad al chat, a la base y al generador frente a otros procesos de la máquina
# (compilaciones ajenas); hace falta ser root. Por defecto, prioridad normal.
NICE=${NICE:-0}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

chat_pid=""
redis_pid=""
cleanup() {
    [ -n "$chat_pid" ] && kill "$chat_pid" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT

start_redis() {
    if [ -z "$redis_pid" ]; then
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --loglevel warning >"$OUT/redis.log" 2>&1 &
        redis_pid=$!
        for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
}

# start_chat memory|redis: a fresh chat process, so each figure starts from the same memory.
start_chat() {
    local backend=$1
    local -a env=(CHAT_ADDR="127.0.0.1:$PORT" JWT_SECRET=secreto-de-chat-bench
        CHAT_ADMIN_PASSWORD="$ADMIN_PASSWORD" CHAT_OUTBOX="$OUT/outbox" RUST_LOG=warn)
    if [ "$backend" = redis ]; then
        start_redis
        env+=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CHAT_REDIS_PREFIX="bench$RANDOM$RANDOM")
    fi
    rm -rf "$OUT/outbox"
    env "${env[@]}" nice -n "$NICE" "$BIN_DIR/chat" >"$OUT/chat-$backend.log" 2>&1 &
    chat_pid=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && return; sleep 0.1; done
    echo "el chat no arrancó: mira $OUT/chat-$backend.log" >&2
    exit 1
}

stop_chat() {
    kill "$chat_pid" 2>/dev/null || true
    wait "$chat_pid" 2>/dev/null || true
    chat_pid=""
}

# bench NAME BACKEND [--baseline] SCENARIO ARGS…
bench() {
    local name=$1 backend=$2
    shift 2
    start_chat "$backend"
    echo "== $name ($backend), carga (loadavg) $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/loadavg.txt" >&2
    # A failed scenario is reported and the others still run.
    CHAT_ADMIN_PASSWORD="$ADMIN_PASSWORD" nice -n "$NICE" "$BIN_DIR/chat-bench" --url "http://127.0.0.1:$PORT" \
        --pid "$chat_pid" --report "$OUT/$name-$backend.md" "$@" | tee "$OUT/$name-$backend.txt" ||
        echo "== $name ($backend) falló" | tee -a "$OUT/loadavg.txt" >&2
    tail -n 1 "$OUT/$name-$backend.txt" >>"$OUT/all.jsonl"
    echo "   al terminar: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"
    stop_chat
}

want() { [ $# -eq 0 ] || [[ " $SELECTED " == *" $1 "* ]]; }
SELECTED="$*"

if want closed-loop; then
    bench closed-loop memory --baseline fanout --rooms 1 --clients 100 --senders 100 --rate 20 --window 32 --messages 100
    bench closed-loop redis fanout --rooms 1 --clients 100 --senders 100 --rate 20 --window 32 --messages 100
fi
if want fanout-10k; then
    bench fanout-10k memory --baseline fanout --rooms 10 --clients 1000 --senders 5 --rate 1 --messages 30 --drain-secs 20
    bench fanout-10k redis fanout --rooms 10 --clients 1000 --senders 5 --rate 1 --messages 30 --drain-secs 20
fi
if want fanout-10k-spread; then
    # The same 50,000 deliveries/s with the 50 senders' clocks spread over the second, instead
    # of 50 messages (50,000 frames) at the same instant every second.
    bench fanout-10k-spread memory --baseline fanout --rooms 10 --clients 1000 --senders 5 --rate 1 --messages 30 --drain-secs 20 --spread
    bench fanout-10k-spread redis fanout --rooms 10 --clients 1000 --senders 5 --rate 1 --messages 30 --drain-secs 20 --spread
fi
if want fanout-10k-light; then
    # The same 10,000 connections at a fifth of the load (10,000 deliveries/s).
    bench fanout-10k-light memory --baseline fanout --rooms 10 --clients 1000 --senders 1 --rate 1 --messages 30 --drain-secs 20
    bench fanout-10k-light redis fanout --rooms 10 --clients 1000 --senders 1 --rate 1 --messages 30 --drain-secs 20
fi
if want idle; then
    bench idle memory --baseline idle --connections 10000 --rooms 10
    bench idle redis idle --connections 10000 --rooms 10
fi
if want logins; then
    # RSS after 1,000 registrations and logins (the idle figure is incidental here).
    bench logins memory --users 1000 idle --connections 1000 --rooms 1 --hold-secs 2
fi
if want join-storm; then
    bench join-storm memory --baseline join-storm --users 1000
fi
if want sse; then
    bench sse memory --baseline sse --subscribers 1000 --window-secs 10
fi
if want jobs; then
    bench jobs redis jobs --offline 100 --rooms 10 --outbox "$OUT/outbox"
    bench jobs memory jobs --offline 100 --rooms 10 --outbox "$OUT/outbox"
fi
