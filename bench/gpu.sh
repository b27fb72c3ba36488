#!/usr/bin/env bash
# The GPU figures of issue 12, in one run of under 5 minutes on one H100/H200 (16 cores):
#   - frames/s end to end: 1280x720 JPEG files on local disk -> prediction rows in PostgreSQL
#     (a throwaway cluster started here when initdb/pg_ctl are found, else SQLite),
#     with the bare forward at the same batch and the learn.predict loop on the same GPU
#     (bench/inference.py);
#   - nvJPEG decode frames/s alone, and the max probability difference between the GPU path
#     (fast preprocessing, fp16/bf16) and the CPU exact path on the parity frames (bench/gpu.py).
# It installs nothing: it uses the repo's .venv if there is one, else python3 as it is.
#
#   bench/gpu.sh              on the GPU machine
#   bench/gpu.sh --cpu-smoke  tiny sizes on the CPU: checks the script itself works
#   bench/gpu.sh --compile    also torch.compile the model (its warm-up is not measured)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

smoke=0
extra=()
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke=1 ;;
    --compile) extra+=(--compile) ;;
    *) echo "usage: bench/gpu.sh [--cpu-smoke] [--compile]" >&2; exit 2 ;;
  esac
done

if [ "$smoke" = 1 ]; then
  device=cpu
  e2e=(--frames 48 --predict-frames 4 --get-preds-frames 16 --split-frames 4 --batch-size 16 --decode-threads 2)
  decode=(--frames 32 --batch-size 16)
else
  device=cuda
  if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "no CUDA GPU visible to $python (use --cpu-smoke to check the script on the CPU)" >&2
    exit 1
  fi
  e2e=(--frames 8192 --predict-frames 128 --get-preds-frames 1024 --split-frames 64 --batch-size 256
       --decode-threads 8 --prefetch 3)
  decode=(--frames 4096 --batch-size 256)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/bearwatch-gpu.XXXXXX")"
pgdata="$work/pg"
pg_started=0
runas=()
cleanup() {
  if [ "$pg_started" = 1 ]; then
    "${runas[@]}" "$pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway PostgreSQL cluster on a Unix socket in $work, if the binaries are here.
find_pg() {
  local name="$1" found
  found="$(command -v "$name" 2>/dev/null || true)"
  if [ -z "$found" ]; then
    found="$(ls -1d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)"
  fi
  echo "$found"
}
initdb="$(find_pg initdb)"
pg_ctl="$(find_pg pg_ctl)"
database_url=""
if [ -n "$initdb" ] && [ -n "$pg_ctl" ] && "$python" -c 'import psycopg' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
    for user in postgres nobody; do
      if id "$user" >/dev/null 2>&1 && command -v runuser >/dev/null; then runas=(runuser -u "$user" --); break; fi
    done
    [ "${#runas[@]}" -gt 0 ] && chown "${runas[2]}" "$work" && chmod 755 "$work"
  fi
  port=$((20000 + RANDOM % 20000))
  if [ "$(id -u)" != 0 ] || [ "${#runas[@]}" -gt 0 ]; then
    if "${runas[@]}" "$initdb" -D "$pgdata" -A trust -U postgres >"$work/initdb.log" 2>&1 &&
       "${runas[@]}" "$pg_ctl" -D "$pgdata" -w -l "$work/pg.log" \
         -o "-k $work -p $port -c listen_addresses='' -c fsync=off -c synchronous_commit=off" start >/dev/null 2>&1; then
      pg_started=1
      "$python" - "$work" "$port" <<'EOF'
import sys, psycopg
with psycopg.connect(host=sys.argv[1], port=sys.argv[2], user="postgres", dbname="postgres", autocommit=True) as c:
    c.execute("CREATE DATABASE bench")
EOF
      database_url="postgresql+psycopg://postgres@/bench?host=$work&port=$port"
    fi
  fi
fi
if [ -n "$database_url" ]; then
  echo "database: a throwaway PostgreSQL cluster ($("${runas[@]}" "$pg_ctl" --version)), fsync off"
else
  echo "database: SQLite (no usable initdb/pg_ctl/psycopg here)"
fi
db_args=()
[ -n "$database_url" ] && db_args=(--database-url "$database_url")

echo "python: $python; $(uptime)"
echo
echo "== end to end, bare forward, learn.predict (bench/inference.py) =="
"$python" bench/inference.py --device "$device" --preprocess fast "${e2e[@]}" "${db_args[@]}" "${extra[@]}"
echo
echo "== decode alone, parity against the CPU exact path (bench/gpu.py) =="
"$python" bench/gpu.py --device "$device" "${decode[@]}"
