#!/usr/bin/env bash
# Durable appends over HTTP (issue 5's figure), as BENCHMARKS.md measures
# them: for each set, a fresh ledger served by `ledger serve` on loopback,
# one stored blob, then RUNS runs of wrk (64 keep-alive connections, 10 s
# each), every request appending a new artefact entry (append.lua). It
# prints each run's entries/s, p50 and p99, then a summary. Run from
# anywhere:
#
#   bash testdata/bench/http-appends.sh [RUNS [SETS]]     # default: 6 runs, 1 set
#
# Needs wrk (Debian: apt-get install wrk). LEDGER_BENCH_PORT picks the port
# (default 8099), LEDGER_BENCH_THREADS wrk's threads (default 2). Not part
# of CI: it takes RUNS x SETS x 10 s and the machine's whole CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-6}
sets=${2:-1}
port=${LEDGER_BENCH_PORT:-8099}
threads=${LEDGER_BENCH_THREADS:-2}
command -v wrk >/dev/null || { echo "http-appends.sh: wrk is not installed (Debian: apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d -t ledger-bench.XXXXXX)
server=
cleanup() {
	[ -z "$server" ] || kill "$server" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/ledger" ./cmd/ledger
ledger=$work/ledger
url=http://127.0.0.1:$port

all=$work/all.txt
: >"$all"
for set in $(seq "$sets"); do
	data=$work/set$set
	"$ledger" init --data "$data" --origin bench.example/dhf >/dev/null 2>&1
	token=$("$ledger" token create --data "$data" --name bench --role appender 2>/dev/null | tail -1)
	"$ledger" serve --data "$data" --listen "127.0.0.1:$port" >/dev/null 2>"$work/serve$set.log" &
	server=$!
	for _ in $(seq 100); do
		curl -sf "$url/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	echo evidence >"$work/e.txt"
	digest=$(LEDGER_TOKEN=$token "$ledger" put --node "$url" "$work/e.txt")
	echo "set $set of $sets (a fresh log):"
	for run in $(seq "$runs"); do
		out=$(SIZE=9 DIGEST=$digest TOKEN=$token wrk "-t$threads" -c64 -d10s --latency -s testdata/bench/append.lua "$url")
		rps=$(awk '/^Requests\/sec/ {printf "%d", $2}' <<<"$out")
		p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
		p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
		bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
		printf '  run %d: %6d entries/s  p50 %-8s p99 %-8s%s\n' "$run" "$rps" "$p50" "$p99" "${bad:+  NON-2XX $bad}"
		echo "$rps $p99 ${bad:-0}" >>"$all"
	done
	kill "$server"
	wait "$server" 2>/dev/null || true
	server=
done

# p99 comes as 12.34ms, 1.23s or 850.00us; compare in milliseconds.
awk '
function ms(v) { if (v ~ /ms$/) return v + 0; if (v ~ /us$/) return (v + 0) / 1000; if (v ~ /s$/) return (v + 0) * 1000; return v + 0 }
{ n++; r = $1; p = ms($2); if (n == 1 || r < rmin) rmin = r; if (r > rmax) rmax = r
  if (n == 1 || p < pmin) pmin = p; if (p > pmax) pmax = p
  if (r >= 10000) fast++; if (p <= 50) tight++; if ($3 > 0) failed++ }
END { printf "%d runs: %d-%d entries/s (at or above 10,000 in %d), p99 %.1f-%.1f ms (at or under 50 ms in %d)%s\n",
  n, rmin, rmax, fast, pmin, pmax, tight, failed ? sprintf("; %d runs had non-2xx answers", failed) : "" }' "$all"
