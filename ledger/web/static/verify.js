// verify.js re-verifies a release page's claim in the browser, trusting
// only the log key the auditor pastes: the checkpoint is a signed note
// (C2SP signed-note) whose Ed25519 signature must verify with that key,
// the release entry must be included in the tree the checkpoint commits to
// (RFC 6962 hashing, RFC 9162 §2.1.3.2 inclusion verification), and the
// entry must be the release entry of the version and manifest the page
// shows. It uses WebCrypto (SHA-256 and Ed25519) and writes only text.
'use strict';

(function () {
  const form = document.getElementById('check-form');
  const block = document.getElementById('receipt-data');
  const out = document.getElementById('check-result');
  if (!form || !block || !out) {
    return;
  }
  const utf8 = new TextEncoder();

  class CheckError extends Error {}
  function fail(message) {
    throw new CheckError(message);
  }

  function fromBase64(s, what) {
    let bin;
    try {
      bin = atob(s);
    } catch (e) {
      fail(what + ' is not valid base64');
    }
    const b = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) {
      b[i] = bin.charCodeAt(i);
    }
    return b;
  }

  function concat(...parts) {
    const n = parts.reduce((sum, p) => sum + p.length, 0);
    const b = new Uint8Array(n);
    let off = 0;
    for (const p of parts) {
      b.set(p, off);
      off += p.length;
    }
    return b;
  }

  function hex(b) {
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  function equal(a, b) {
    if (a.length !== b.length) {
      return false;
    }
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) {
        return false;
      }
    }
    return true;
  }

  async function sha256(b) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', b));
  }

  // parseKey reads a signed-note verifier key, <name>+<hash>+<key>, and
  // checks that its 4-byte key hash is SHA-256(name "\n" 0x01 key).
  async function parseKey(text) {
    // The base64 key may itself hold "+": split at the first two only.
    const s = text.trim();
    const i = s.indexOf('+');
    const j = s.indexOf('+', i + 1);
    if (i < 0 || j < 0) {
      fail('log.pub must be one line of three fields joined by "+": the log name, the key hash and the key');
    }
    const name = s.slice(0, i);
    const hashHex = s.slice(i + 1, j);
    const keyText = s.slice(j + 1);
    if (name === '' || /\s/.test(name)) {
      fail('the name in log.pub is empty or holds spaces');
    }
    if (!/^[0-9a-f]{8}$/.test(hashHex)) {
      fail('the key hash in log.pub must be 8 lower-case hex digits');
    }
    const raw = fromBase64(keyText, 'the key in log.pub');
    if (raw.length !== 33 || raw[0] !== 1) {
      fail('log.pub does not hold an Ed25519 key (algorithm byte 1 and 32 bytes of key)');
    }
    const hash = (await sha256(concat(utf8.encode(name + '\n'), raw))).slice(0, 4);
    if (hex(hash) !== hashHex) {
      fail('the key hash in log.pub does not match its name and key: the text was altered');
    }
    let key;
    try {
      key = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      fail('this browser cannot use Ed25519 keys in WebCrypto (' + e.message + ')');
    }
    return { name, hash, key };
  }

  // openCheckpoint checks the note's signature by the key and returns the
  // checkpoint's origin, size and root.
  async function openCheckpoint(text, k) {
    const split = text.indexOf('\n\n');
    if (split < 0) {
      fail('the checkpoint has no signature block');
    }
    const body = text.slice(0, split + 1);
    const sigs = text.slice(split + 2);
    if (!sigs.endsWith('\n')) {
      fail('the checkpoint\'s signature block does not end with a newline');
    }
    let verified = false;
    for (const line of sigs.slice(0, -1).split('\n')) {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m) {
        fail('the checkpoint has a malformed signature line');
      }
      if (m[1] !== k.name) {
        continue;
      }
      const sig = fromBase64(m[2], 'a checkpoint signature');
      if (sig.length !== 68 || !equal(sig.slice(0, 4), k.hash)) {
        continue;
      }
      if (!(await crypto.subtle.verify({ name: 'Ed25519' }, k.key, sig.slice(4), utf8.encode(body)))) {
        fail('the checkpoint\'s signature by ' + k.name + ' does not verify with this key: the checkpoint was altered');
      }
      verified = true;
    }
    if (!verified) {
      fail('the checkpoint carries no signature by the key in log.pub (' + k.name + '); it was signed by another key');
    }
    const lines = body.split('\n');
    if (lines.length < 4 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) {
      fail('the checkpoint body is not origin, size and root');
    }
    const root = fromBase64(lines[2], 'the checkpoint root');
    if (root.length !== 32) {
      fail('the checkpoint root is not a SHA-256 hash');
    }
    return { origin: lines[0], size: BigInt(lines[1]), root };
  }

  // rootFromInclusion computes the root of a tree of the given size from
  // a leaf hash at index and its inclusion proof (RFC 9162 §2.1.3.2).
  async function rootFromInclusion(index, size, leaf, proof) {
    if (index >= size) {
      fail('the entry index ' + index + ' is outside the tree of size ' + size);
    }
    let fn = index;
    let sn = size - 1n;
    let r = leaf;
    const one = new Uint8Array([1]);
    for (const p of proof) {
      if (sn === 0n) {
        fail('the inclusion proof has too many hashes');
      }
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(concat(one, p, r));
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        r = await sha256(concat(one, r, p));
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) {
      fail('the inclusion proof has too few hashes');
    }
    return r;
  }

  async function check(data, keyText) {
    if (!window.crypto || !crypto.subtle) {
      fail('this browser offers no WebCrypto here (it needs HTTPS or localhost); use ledger verify instead');
    }
    const k = await parseKey(keyText);
    const cp = await openCheckpoint(data.checkpoint, k);
    const size = BigInt(data.tree_size);
    if (cp.size !== size) {
      fail('the inclusion proof is for tree size ' + size + ' but the checkpoint is for ' + cp.size);
    }
    const entry = fromBase64(data.entry, 'the entry');
    if ('sha256:' + hex(await sha256(entry)) !== data.entry_digest) {
      fail('the entry does not hash to the entry digest shown');
    }
    const leaf = await sha256(concat(new Uint8Array([0]), entry));
    const proof = (data.hashes || []).map((h) => fromBase64(h, 'a proof hash'));
    const root = await rootFromInclusion(BigInt(data.index), size, leaf, proof);
    if (!equal(root, cp.root)) {
      fail('the inclusion proof does not lead to the signed root: entry ' + data.index + ' is not in this log as shown');
    }
    let e;
    try {
      e = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(entry));
    } catch (err) {
      fail('the entry is not JSON');
    }
    if (e.kind !== 'release') {
      fail('entry ' + data.index + ' is a ' + e.kind + ' entry, not a release');
    }
    const s = e.subject || {};
    if (s.version !== data.version) {
      fail('entry ' + data.index + ' records release ' + s.version + ', not ' + data.version);
    }
    if (s.manifest !== data.manifest) {
      fail('entry ' + data.index + ' names manifest ' + s.manifest + ', not the ' + data.manifest + ' shown');
    }
    return 'Verified in this browser: entry ' + data.index + ' records release ' + data.version + ' with manifest ' +
      data.manifest + ', and is included in the tree of size ' + cp.size + ' of ' + cp.origin +
      ', whose checkpoint is signed by the key ' + k.name + ' you supplied.';
  }

  function show(state, text) {
    out.className = state;
    out.dataset.result = state;
    out.textContent = text;
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show('working', 'Checking…');
    let data;
    try {
      data = JSON.parse(block.textContent);
    } catch (e) {
      show('failed', 'NOT verified: the page\'s receipt data does not parse');
      return;
    }
    try {
      show('verified', await check(data, document.getElementById('log-pub').value));
    } catch (e) {
      show('failed', 'NOT verified: ' + (e instanceof CheckError ? e.message : 'the check could not run (' + e + ')'));
    }
  });
})();
