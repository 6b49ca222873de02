#!/usr/bin/env bash
# The Evidence Ledger demo: builds the ledger command, creates a ledger,
# records the sample evidence bundle in testdata/bundle, and verifies a
# receipt offline the way an auditor would. Run from the repository root:
#
#   bash testdata/demo.sh
#
# LEDGER_DEMO_DIR chooses where the demo ledger goes (default: a new
# temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

work=${LEDGER_DEMO_DIR:-$(mktemp -d -t ledger-demo.XXXXXX)}
mkdir -p "$work"
bin="$work/bin/ledger"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*" >&2; "$@"; }

step "Build the ledger command"
go build -o "$bin" ./cmd/ledger
export PATH="$work/bin:$PATH"
export LEDGER_DATA="$work/data"

step "Create a ledger (store + Ed25519 log key; log.pub is what auditors get)"
show ledger init --origin demo.evidence-ledger.local/dhf

step "CI appends every file of the v0.1.0 evidence bundle; one receipt per file"
mapfile -t files < <(find testdata/bundle -type f | LC_ALL=C sort)
show ledger append --release v0.1.0 --as ci:demo-pipeline --base testdata/bundle -o "$work/receipts" "${files[@]}" >"$work/receipts.jsonl"
printf '%s receipts (JSON Lines) in %s; one file per artefact under %s/receipts\n' "$(wc -l <"$work/receipts.jsonl")" "$work/receipts.jsonl" "$work"

step "The log: every entry, who logged it and when"
show ledger log

step "The latest signed checkpoint (C2SP tlog-checkpoint)"
show ledger checkpoint

step "An auditor verifies the installer's receipt offline, with log.pub alone"
show ledger verify-receipt --log-key "$LEDGER_DATA/log.pub" "$work/receipts/bioflow_pro.exe.receipt.json" --file testdata/bundle/bioflow_pro.exe

step "A tampered installer is caught"
cp testdata/bundle/bioflow_pro.exe "$work/tampered.exe"
printf 'X' >>"$work/tampered.exe"
if ledger verify-receipt --log-key "$LEDGER_DATA/log.pub" "$work/receipts/bioflow_pro.exe.receipt.json" --file "$work/tampered.exe"; then
  echo "demo: tampering went unnoticed" >&2
  exit 1
fi
echo "(exit status 1: the receipt does not vouch for the altered file)"

step "Recording the same evidence again adds nothing (idempotent appends)"
show ledger append --release v0.1.0 --as ci:demo-pipeline --base testdata/bundle testdata/bundle/junit.xml | grep -o '"duplicate":true'

step "Proofs: inclusion of entry 0, and that the tree of size 1 is a prefix of today's"
show ledger proof inclusion --index 0
show ledger proof consistency --from 1

step "Audit: re-hash every blob, entry and tree hash; check every checkpoint"
show ledger audit

printf '\nDemo ledger left in %s (data: %s)\n' "$work" "$LEDGER_DATA"
