// The privacy dashboard's check of the access ledger, in the user's own browser: it remembers
// the last signed head it saw (localStorage) and checks, with WebCrypto's SHA-256, that the head
// the region shows now extends it (RFC 9162 §2.1.4.2 consistency proof). A region that rewrote
// its history, or shows this browser a different history than before, fails here.
"use strict";
(function () {
  const head = document.getElementById("ledger-head");
  const out = document.getElementById("ledger-check");
  if (!head || !out) return;
  const region = head.dataset.region;
  const size = Number(head.dataset.size);
  const root = head.dataset.root;
  const key = "sovereign-ledger-head:" + region;

  function say(state, text) {
    out.dataset.state = state;
    out.className = state === "failed" ? "ledger-check error" : "ledger-check";
    if (state === "failed") out.setAttribute("role", "alert");
    out.textContent = text;
  }
  function bytes(hex) {
    if (typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex)) throw new Error("bad hash");
    const b = new Uint8Array(32);
    for (let i = 0; i < 32; i++) b[i] = parseInt(hex.substr(2 * i, 2), 16);
    return b;
  }
  async function node(left, right) {
    const buf = new Uint8Array(65);
    buf[0] = 1;
    buf.set(left, 1);
    buf.set(right, 33);
    return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  }
  function same(a, b) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
  // RFC 9162 §2.1.4.2; sizes are below 2^53, so plain numbers and Math.floor stand in for
  // shifts.
  async function consistent(first, second, proof, firstRoot, secondRoot) {
    if (first < 1 || first > second || proof.length > 64) return false;
    if (first === second) return proof.length === 0 && same(firstRoot, secondRoot);
    const path = [];
    let m = first;
    while (m % 2 === 0) m /= 2;
    if (m === 1) path.push(firstRoot);
    for (const p of proof) path.push(p);
    if (path.length === 0) return false;
    let fn = first - 1, sn = second - 1;
    const odd = (n) => n % 2 === 1;
    const half = (n) => Math.floor(n / 2);
    while (odd(fn)) { fn = half(fn); sn = half(sn); }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0) return false;
      if (odd(fn) || fn === sn) {
        fr = await node(c, fr);
        sr = await node(c, sr);
        while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      } else {
        sr = await node(sr, c);
      }
      fn = half(fn); sn = half(sn);
    }
    return same(fr, firstRoot) && same(sr, secondRoot) && sn === 0;
  }
  function remember() {
    localStorage.setItem(key, JSON.stringify({ size: size, root: root }));
  }

  async function check() {
    let seen = null;
    try { seen = JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { seen = null; }
    if (!seen || !Number.isSafeInteger(seen.size) || typeof seen.root !== "string") {
      remember();
      say("first", "This browser now remembers the ledger's signed head (" + size +
        " entries) and will check that every later one extends it.");
      return;
    }
    if (seen.size > size) {
      say("failed", "Warning: the ledger's signed head went back from " + seen.size + " to " +
        size + " entries since this browser last saw it. Its history may have been rewritten.");
      return;
    }
    if (seen.size === size) {
      if (seen.root === root) {
        say("ok", "The ledger's signed head (" + size + " entries) is the one this browser saw last.");
      } else {
        say("failed", "Warning: the ledger shows a different history of " + size +
          " entries than this browser saw before. Its history may have been rewritten.");
      }
      return;
    }
    let reply;
    try {
      const r = await fetch("/ledger/consistency?from=" + seen.size + "&to=" + size,
        { credentials: "same-origin" });
      reply = await r.json();
      if (!r.ok) throw new Error(reply.detail || r.status);
    } catch (e) {
      say("failed", "Warning: the region gave no proof that its ledger extends the head this " +
        "browser saw (" + seen.size + " entries): " + e.message);
      return;
    }
    let ok = false;
    try {
      ok = reply.to === size && reply.checkpoint.root === root &&
        await consistent(seen.size, size, reply.proof.map(bytes), bytes(seen.root), bytes(root));
    } catch (e) {
      ok = false;
    }
    if (ok) {
      remember();
      say("ok", "Checked in this browser: the ledger's signed head (" + size +
        " entries) extends the one it saw last (" + seen.size + " entries).");
    } else {
      say("failed", "Warning: the ledger's signed head (" + size + " entries) does NOT extend " +
        "the one this browser saw last (" + seen.size + " entries). Its history may have " +
        "been rewritten.");
    }
  }
  check().catch((e) => say("failed", "Warning: the ledger could not be checked: " + e.message));
})();
