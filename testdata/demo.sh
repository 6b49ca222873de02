#!/usr/bin/env bash
# The Evidence Ledger demo: builds the ledger command, creates a ledger, and
# runs a whole release: a signer's key and enrolment, the REVIEWED_HASH
# stamps of the requirements in testdata/sdoc, the release gate, the signed
# release-record manifest over the sample evidence bundle in
# testdata/bundle, recording it, the traceability chain, and the auditor's
# offline verification, including a tampered file being caught. Run from
# the repository root:
#
#   bash testdata/demo.sh
#
# LEDGER_DEMO_DIR chooses where the demo ledger goes (default: a new
# temporary directory, printed at the end). At the end the demo serves the
# ledger over HTTP until Ctrl-C, printing what to try (LEDGER_DEMO_PORT,
# default 8080; LEDGER_DEMO_SERVE=0 stops after the local flow).
set -euo pipefail
cd "$(dirname "$0")/.."

work=${LEDGER_DEMO_DIR:-$(mktemp -d -t ledger-demo.XXXXXX)}
mkdir -p "$work"
bin="$work/bin/ledger"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# show prints a command as it can be pasted into a shell (each argument
# quoted where it needs to be), then runs it.
show() {
	local a quoted=()
	for a in "$@"; do
		case $a in
		*[!A-Za-z0-9_./:=@%+,-]* | '') quoted+=("'${a//\'/\'\\\'\'}'") ;;
		*) quoted+=("$a") ;;
		esac
	done
	printf '$ %s\n' "${quoted[*]}" >&2
	"$@"
}

step "Build the ledger command"
go build -o "$bin" ./cmd/ledger
export PATH="$work/bin:$PATH"
export LEDGER_DATA="$work/data"
# The demo signer's passphrase. A real signer types it at every signing
# (21 CFR 11.200); automation may use LEDGER_PASSPHRASE or --passphrase-file.
export LEDGER_PASSPHRASE="demo passphrase, not for real use"
mkdir -p "$work/keys" "$work/signatures" "$work/auditor"

step "Create a ledger (store + Ed25519 log key; log.pub is what auditors get)"
show ledger init --origin demo.evidence-ledger.local/dhf

step "The bundle's canonical digest, and the same digest from coreutils alone"
show ledger bundle hash testdata/bundle
printf '$ cd testdata/bundle && find . -type f -printf '"'"'%%P\\n'"'"' | LC_ALL=C sort | xargs -d '"'"'\\n'"'"' sha256sum | sha256sum\n' >&2
(cd testdata/bundle && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum)

step "Jane, the release approver, makes her key pair (private key encrypted with her passphrase)"
show ledger keygen --name "Jane Doe" --email jane@example.com -o "$work/keys/jane"

step "An admin enrols Jane's public key: the key id is hers for ever (21 CFR 11.100)"
show ledger signer enroll --key "$work/keys/jane.pub" --name "Jane Doe" --email jane@example.com --role release-approver --as admin >/dev/null
show ledger signer list

step "Each merged PR's REVIEWED_HASH approvals (StrictDoc .sdoc files) enter the log as stamps"
show ledger stamp scan testdata/sdoc --base testdata/sdoc --pr https://git.example.com/bioflow/dhf/pull/57 \
  --commit 0a1b2c3d4e5f --approver "Jane Doe <jane@example.com>" --as ci:demo-pipeline >/dev/null

step "The release gate: every regulated requirement reviewed and stamped with its current REVIEWED_HASH"
show ledger release check --index testdata/bundle/index.json --sdoc testdata/sdoc
echo "(a requirement edited after its approval blocks the release:)"
if ledger release check --index testdata/bundle/index.json --sdoc testdata/sdoc-changed; then
  echo "demo: the gate let a changed requirement through" >&2
  exit 1
fi

step "Jane signs the v0.1.0 release record: she sees what she signs, and its meaning"
show ledger release sign --bundle testdata/bundle --version v0.1.0 --key "$work/keys/jane.key" \
  --meaning approved-for-release --sdoc testdata/sdoc --yes -o "$work/signatures/release-v0.1.0.json"

step "CI records the release: every file, the listing and the manifest, then the entries"
show ledger release record --bundle testdata/bundle --manifest "$work/signatures/release-v0.1.0.json" --as ci:demo-pipeline

step "The log: every entry, who logged it and when"
show ledger log --limit 20

step "Traceability from the log alone: requirement → reviewed content → PR → approver → release"
show ledger trace REQ-007
show ledger trace --release v0.1.0

step "An auditor, with only the bundle, the manifest, the receipt and two public keys"
cp "$LEDGER_DATA/log.pub" "$work/auditor/log.pub"
cp "$work/keys/jane.pub" "$work/auditor/jane.pub"
show ledger verify --bundle testdata/bundle --manifest "$work/signatures/release-v0.1.0.json" \
  --signer-key "$work/auditor/jane.pub" --log-key "$work/auditor/log.pub" --receipt "$work/signatures/release-v0.1.0.receipt.json"

step "A bundle with one altered file is caught, and the file is named"
cp -r testdata/bundle "$work/tampered"
printf '<!-- edited after signing -->\n' >>"$work/tampered/rtm/index.html"
if ledger verify --bundle "$work/tampered" --manifest "$work/signatures/release-v0.1.0.json" --signer-key "$work/auditor/jane.pub"; then
  echo "demo: tampering went unnoticed" >&2
  exit 1
fi
echo "(exit status 1: the signature does not vouch for the altered bundle)"

step "Recording the same release again adds nothing (idempotent)"
show ledger release record --bundle testdata/bundle --manifest "$work/signatures/release-v0.1.0.json"

step "Proofs: that the tree of size 1 is a prefix of today's"
show ledger proof consistency --from 1

step "The audit package: everything an auditor needs, in one zip (21 CFR 11.10(b))"
show ledger audit-package --release v0.1.0 -o "$work/auditor/release-v0.1.0-audit.zip"
show ledger verify --audit-package "$work/auditor/release-v0.1.0-audit.zip" --bundle testdata/bundle --log-key "$work/auditor/log.pub"

step "The audit report: one self-contained HTML file that prints to PDF"
show ledger report --release v0.1.0 -o "$work/auditor/release-v0.1.0-report.html"

step "Audit: re-hash every blob, entry and tree hash; check every checkpoint"
show ledger audit

printf '\nDemo ledger left in %s (data: %s, signatures: %s/signatures)\n' "$work" "$LEDGER_DATA" "$work"

[ "${LEDGER_DEMO_SERVE:-1}" = 1 ] || exit 0
port=${LEDGER_DEMO_PORT:-8080}
url="http://127.0.0.1:$port"
step "Serving the ledger at $url until Ctrl-C (LEDGER_DEMO_SERVE=0 skips this)"
token=$(ledger token create --name ci-demo --role appender 2>/dev/null)
cat <<EOT
Reads are public in this demo; writes need the token (shown once):
  LEDGER_TOKEN=$token

Open in a browser (the auditor's pages; read-only):
  $url/
      the log, its checkpoint and recent releases; search
  $url/releases/v0.1.0
      who signed, with what meaning and when; the files, requirements and stamps;
      paste log.pub there to re-verify the proof in the browser; the audit package

Try, from another terminal:
  curl $url/v1/checkpoint                          # the signed checkpoint
  curl '$url/v1/entries?release=v0.1.0&kind=release'  # the release entry
  curl '$url/v1/proofs/inclusion?index=0'          # an inclusion proof
  curl $url/tile/entries/000.p/1 | head -c 300     # C2SP tlog-tiles
  curl -s $url/metrics | grep ledger_              # Prometheus metrics
  $bin monitor --node $url --log-key $work/auditor/log.pub --state $work/monitor.checkpoint --once
  curl -H "Authorization: Bearer \$LEDGER_TOKEN" --data-binary @README.md $url/v1/blobs

An auditor verifies the release offline, with no node at all:
  $bin verify --bundle testdata/bundle --manifest $work/signatures/release-v0.1.0.json \\
    --signer-key $work/auditor/jane.pub --log-key $work/auditor/log.pub \\
    --receipt $work/signatures/release-v0.1.0.receipt.json
EOT
exec ledger serve --listen "127.0.0.1:$port" --public-reads
