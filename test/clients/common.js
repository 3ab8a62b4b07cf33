// Shared helpers for the Node.js client checks (ioredis_check.js,
// noderedis_check.js): command-line parsing, bounded waits, assertions, and
// the JSON report each check prints on success.
//
// Usage of a check script:
//   node <script> SCENARIO HOST:PORT [--protocol 2|3|default] [--db N]
//        [--name NAME] [--clients N] [--timeout SECONDS]
// Each option may also come from the environment: SP_CLIENT_PROTOCOL,
// SP_CLIENT_DB, SP_CLIENT_NAME, SP_CLIENT_CLIENTS, SP_CLIENT_TIMEOUT (the
// command line wins). On success the script prints one JSON object on
// stdout and exits 0; on failure it prints "FAIL <scenario>: <reason>" on
// stderr and exits 1 (2 for a usage error).
"use strict";

const crypto = require("crypto");

class CheckError extends Error {}

function usage(script, scenarios, msg) {
  if (msg) process.stderr.write(msg + "\n");
  process.stderr.write(
    "usage: node " + script + " SCENARIO HOST:PORT [--protocol 2|3|default] [--db N]" +
      " [--name NAME] [--clients N] [--timeout SECONDS]\nscenarios: " +
      Object.keys(scenarios).join(", ") + "\n");
  process.exit(2);
}

function parseArgs(script, scenarios) {
  const env = process.env;
  const opts = {
    protocol: env.SP_CLIENT_PROTOCOL || "default",
    db: env.SP_CLIENT_DB !== undefined ? Number(env.SP_CLIENT_DB) : 0,
    name: env.SP_CLIENT_NAME || null,
    clients: env.SP_CLIENT_CLIENTS !== undefined ? Number(env.SP_CLIENT_CLIENTS) : 200,
    timeout: env.SP_CLIENT_TIMEOUT !== undefined ? Number(env.SP_CLIENT_TIMEOUT) : 30,
  };
  const positional = [];
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) {
      positional.push(a);
      continue;
    }
    const key = a.slice(2);
    if (!(key in opts)) usage(script, scenarios, "unknown option " + a);
    if (i + 1 >= argv.length) usage(script, scenarios, "missing value for " + a);
    const v = argv[++i];
    opts[key] = key === "name" || key === "protocol" ? v : Number(v);
  }
  if (positional.length !== 2) usage(script, scenarios, "need SCENARIO and HOST:PORT");
  const [scenario, addr] = positional;
  if (!(scenario in scenarios)) usage(script, scenarios, "unknown scenario " + scenario);
  const m = /^(.+):(\d+)$/.exec(addr);
  if (!m) usage(script, scenarios, "bad address " + addr);
  if (!["2", "3", "default"].includes(String(opts.protocol))) {
    usage(script, scenarios, "--protocol must be 2, 3 or default");
  }
  for (const k of ["db", "clients"]) {
    if (!Number.isInteger(opts[k]) || opts[k] < 0) {
      usage(script, scenarios, "--" + k + " must be a whole number");
    }
  }
  if (!(opts.timeout > 0)) usage(script, scenarios, "--timeout must be a positive number of seconds");
  opts.protocol = opts.protocol === "default" ? null : Number(opts.protocol);
  opts.host = m[1];
  opts.port = Number(m[2]);
  opts.scenario = scenario;
  return opts;
}

// A promise that rejects if p has not settled within ms.
function withTimeout(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckError("timed out after " + ms + " ms: " + what)), ms);
  });
  return Promise.race([Promise.resolve(p), t]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll fn until it returns a truthy value, at most ms milliseconds.
async function waitUntil(fn, ms, what, interval = 20) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new CheckError("timed out after " + ms + " ms waiting for " + what +
                           (last ? " (last error: " + last.message + ")" : ""));
    }
    await sleep(interval);
  }
}

function show(v) {
  if (Buffer.isBuffer(v)) return "<Buffer " + v.toString("hex") + ">";
  try {
    return JSON.stringify(v, (k, x) => (x && x.type === "Buffer" && Array.isArray(x.data)
      ? "<Buffer " + Buffer.from(x.data).toString("hex") + ">" : x));
  } catch (e) {
    return String(v);
  }
}

function deepEqual(a, b) {
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) {
    return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
      a.every((x, i) => deepEqual(x, b[i]));
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return deepEqual(ka, kb) && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return a === b;
}

function check(cond, msg) {
  if (!cond) throw new CheckError(msg);
}

function eq(got, want, what) {
  if (!deepEqual(got, want)) {
    throw new CheckError(what + ": expected " + show(want) + ", got " + show(got));
  }
}

// Keys unique to one run, so that runs never see each other's data.
function keyPrefix(client, scenario) {
  return "nodecheck:" + client + ":" + scenario + ":" + crypto.randomBytes(4).toString("hex") + ":";
}

// Every byte value, CR LF and NUL included: a value that only survives
// binary-safe handling.
function binaryValue() {
  const b = Buffer.alloc(256 + 8);
  for (let i = 0; i < 256; i++) b[i] = i;
  Buffer.from("\r\n\0$*\r\n-").copy(b, 256);
  return b;
}

// Run one scenario: fn(opts, closers) returns the details to report; every
// function pushed on closers runs afterwards (success or not), each bounded.
async function main(script, clientName, scenarios) {
  const opts = parseArgs(script, scenarios);
  const closers = [];
  const watchdog = setTimeout(() => {
    process.stderr.write("FAIL " + opts.scenario + ": the whole scenario took more than " +
                         opts.timeout + " s\n");
    process.exit(1);
  }, opts.timeout * 1000);
  let details;
  let failure = null;
  const t0 = Date.now();
  try {
    details = await scenarios[opts.scenario](opts, closers);
  } catch (e) {
    failure = e;
  }
  for (const close of closers.reverse()) {
    try {
      await withTimeout(close(), 3000, "closing a client");
    } catch (e) {
      // A client that does not close in time is dropped with the process.
    }
  }
  clearTimeout(watchdog);
  if (failure) {
    const why = failure instanceof CheckError ? failure.message
      : (failure && failure.stack) || String(failure);
    process.stderr.write("FAIL " + opts.scenario + " (" + clientName + ", protocol " +
                         (opts.protocol || "default") + "): " + why + "\n");
    process.exit(1);
  }
  const out = Object.assign({
    client: clientName,
    scenario: opts.scenario,
    requested_protocol: opts.protocol || "default",
    ok: true,
    ms: Date.now() - t0,
  }, details || {});
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
}

// For the "idle" scenarios: resolves when stdin reaches its end (the
// test closes it) or after ms milliseconds, whichever comes first.
function holdUntilStdinCloses(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), ms);
    process.stdin.on("data", () => {});
    process.stdin.on("end", () => {
      clearTimeout(timer);
      resolve("stdin");
    });
    process.stdin.on("error", () => {
      clearTimeout(timer);
      resolve("stdin");
    });
    process.stdin.resume();
  });
}

module.exports = {
  CheckError, withTimeout, waitUntil, sleep, check, eq, deepEqual, show, keyPrefix,
  binaryValue, main, holdUntilStdinCloses,
};
