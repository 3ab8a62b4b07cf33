// ioredis driven through sentinel-proxy: one scenario per run.
//
//   node ioredis_check.js SCENARIO HOST:PORT [--protocol 2|3|default] [--db N]
//        [--name NAME] [--clients N] [--timeout SECONDS]
//
// Scenarios: strings, pipelines, transactions, pubsub, blocking, scripts,
// scan, db, name, idle (see common.js for the options and the output).
// --protocol default leaves ioredis' own default (RESP3 from ioredis 6 on);
// the protocol a connection really speaks is checked against the one asked
// for, so a silent fall back to RESP2 fails the run.
"use strict";

const Redis = require("ioredis");
const {
  CheckError, withTimeout, waitUntil, sleep, check, eq, keyPrefix, binaryValue, main,
  holdUntilStdinCloses,
} = require("./common");

const CMD_MS = 10000;

// ioredis 6 speaks RESP3 unless told otherwise (its `protocol` option);
// ioredis 5 had no such option and spoke RESP2.
const DEFAULT_PROTOCOL = (() => {
  try {
    return require("ioredis/built/redis/RedisOptions").DEFAULT_REDIS_OPTIONS.protocol || 2;
  } catch (e) {
    return 2;
  }
})();

function expectedProtocol(opts) {
  return opts.protocol || DEFAULT_PROTOCOL;
}

// The protocol the connection negotiated (ioredis records it per
// connection, and falls back to 2 when HELLO 3 is refused).
function negotiated(r) {
  return r.condition && r.condition.protocol ? r.condition.protocol : 2;
}

async function connect(opts, closers, extra = {}) {
  const o = {
    host: opts.host,
    port: opts.port,
    db: opts.db,
    lazyConnect: true,
    connectTimeout: 5000,
    commandTimeout: CMD_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null, // a lost connection fails the check, no reconnection
    enableOfflineQueue: true,
  };
  if (opts.protocol) o.protocol = opts.protocol;
  if (opts.name) o.connectionName = opts.name;
  Object.assign(o, extra);
  const r = new Redis(o);
  r.on("error", () => {}); // errors surface through the commands' promises
  closers.push(() => r.quit().catch(() => r.disconnect()));
  await withTimeout(r.connect(), 10000, "connecting to " + opts.host + ":" + opts.port);
  const want = expectedProtocol(opts);
  check(negotiated(r) === want, "the connection speaks RESP" + negotiated(r) + ", RESP" + want +
        " was asked for (HELLO refused?)");
  return r;
}

const T = (p, what) => withTimeout(p, CMD_MS + 2000, what);

// Pipeline results [[err, value], ...] -> values, failing on any error.
function values(results, what) {
  check(Array.isArray(results), what + ": no results (" + results + ")");
  return results.map(([err, v], i) => {
    if (err) throw new CheckError(what + ": command " + i + " failed: " + err.message);
    return v;
  });
}

function blockedClients(info) {
  const m = /blocked_clients:(\d+)/.exec(info);
  return m ? Number(m[1]) : 0;
}

const scenarios = {
  async strings(opts, closers) {
    const r = await connect(opts, closers);
    const k = keyPrefix("ioredis", "strings");
    eq(await T(r.set(k + "s", "hello"), "SET"), "OK", "SET");
    eq(await T(r.get(k + "s"), "GET"), "hello", "GET");
    eq(await T(r.get(k + "missing"), "GET missing"), null, "GET of a missing key");
    eq(await T(r.incr(k + "n"), "INCR"), 1, "INCR");
    eq(await T(r.incrby(k + "n", 41), "INCRBY"), 42, "INCRBY");
    eq(await T(r.get(k + "n"), "GET counter"), "42", "GET counter");
    eq(await T(r.mset(k + "a", "1", k + "b", "2", k + "c", "3"), "MSET"), "OK", "MSET");
    eq(await T(r.mget(k + "a", k + "b", k + "none", k + "c"), "MGET"), ["1", "2", null, "3"], "MGET");
    const text = "h\u00e9llo \u2713 \u{1F600}";
    await T(r.set(k + "utf8", text), "SET utf8");
    eq(await T(r.get(k + "utf8"), "GET utf8"), text, "UTF-8 value");
    const bin = binaryValue();
    eq(await T(r.set(k + "bin", bin), "SET binary"), "OK", "SET binary");
    eq(await T(r.getBuffer(k + "bin"), "GET binary"), bin, "binary value");
    eq(await T(r.strlen(k + "bin"), "STRLEN"), bin.length, "STRLEN of the binary value");
    const big = Buffer.alloc(300 * 1024, 7);
    await T(r.set(k + "big", big), "SET 300 KB");
    eq(await T(r.getBuffer(k + "big"), "GET 300 KB"), big, "300 KB value");
    eq(await T(r.del(k + "s", k + "n", k + "a", k + "b", k + "c", k + "utf8", k + "bin", k + "big"),
               "DEL"), 8, "DEL");
    return { protocol: negotiated(r) };
  },

  async pipelines(opts, closers) {
    const r = await connect(opts, closers);
    const k = keyPrefix("ioredis", "pipelines");
    let p = r.pipeline();
    for (let i = 0; i < 50; i++) p.set(k + i, "v" + i);
    for (let i = 0; i < 50; i++) p.get(k + i);
    check(p.length === 100, "pipeline holds " + p.length + " commands");
    const got = values(await T(p.exec(), "pipeline of 50 SET + 50 GET"), "SET/GET pipeline");
    eq(got.slice(0, 50), Array(50).fill("OK"), "SET replies");
    eq(got.slice(50), Array.from({ length: 50 }, (_, i) => "v" + i), "GET replies");
    p = r.pipeline();
    for (let i = 0; i < 100; i++) p.incr(k + "counter");
    eq(values(await T(p.exec(), "pipeline of 100 INCR"), "INCR pipeline"),
       Array.from({ length: 100 }, (_, i) => i + 1), "INCR replies, in order");
    // An error stays in its own slot.
    const mixed = await T(r.pipeline().set(k + "str", "x").incr(k + "str").get(k + "str").exec(),
                          "pipeline with an error");
    check(mixed[1][0] && /not an integer/.test(mixed[1][0].message),
          "INCR of a string: " + JSON.stringify(mixed[1]));
    eq([mixed[0][1], mixed[2][1]], ["OK", "x"], "replies around the error");
    const del = r.pipeline();
    for (let i = 0; i < 50; i++) del.del(k + i);
    del.del(k + "counter", k + "str");
    values(await T(del.exec(), "cleanup"), "cleanup");
    return { protocol: negotiated(r), commands: 100 };
  },

  async transactions(opts, closers) {
    const r = await connect(opts, closers);
    const other = await connect(opts, closers);
    const k = keyPrefix("ioredis", "transactions");
    // WATCH, then EXEC with nobody touching the key.
    eq(await T(r.watch(k + "w"), "WATCH"), "OK", "WATCH");
    eq(await T(r.get(k + "w"), "GET under WATCH"), null, "GET under WATCH");
    const ok = await T(r.multi().set(k + "w", "1").incr(k + "w").get(k + "w").exec(), "EXEC");
    eq(values(ok, "EXEC"), ["OK", 2, "2"], "EXEC results");
    // WATCH, another connection writes the key, EXEC is aborted.
    eq(await T(r.watch(k + "w"), "WATCH"), "OK", "second WATCH");
    eq(await T(other.set(k + "w", "other"), "SET from the other client"), "OK", "other SET");
    const aborted = await T(r.multi().set(k + "w", "mine").incr(k + "n").exec(), "aborted EXEC");
    eq(aborted, null, "EXEC after the watched key changed");
    eq(await T(other.get(k + "w"), "GET after abort"), "other", "value after the aborted EXEC");
    eq(await T(other.exists(k + "n"), "EXISTS after abort"), 0, "aborted INCR did not run");
    // UNWATCH then EXEC runs; the connection is an ordinary one again.
    await T(r.watch(k + "w"), "WATCH");
    await T(other.set(k + "w", "again"), "SET");
    eq(await T(r.unwatch(), "UNWATCH"), "OK", "UNWATCH");
    eq(values(await T(r.multi().incr(k + "n").exec(), "EXEC after UNWATCH"), "EXEC"), [1],
       "EXEC after UNWATCH");
    eq(await T(r.ping(), "PING"), "PONG", "PING after the transactions");
    await T(r.del(k + "w", k + "n"), "cleanup");
    return { protocol: negotiated(r), aborted_exec: aborted };
  },

  async pubsub(opts, closers) {
    const sub = await connect(opts, closers);
    const pub = await connect(opts, closers);
    const k = keyPrefix("ioredis", "pubsub");
    const channel = k + "ch";
    const got = [];
    const pgot = [];
    sub.on("message", (ch, msg) => got.push([ch, msg]));
    sub.on("pmessage", (pattern, ch, msg) => pgot.push([pattern, ch, msg]));
    eq(await T(sub.subscribe(channel), "SUBSCRIBE"), 1, "SUBSCRIBE count");
    eq(await T(sub.psubscribe(k + "p:*"), "PSUBSCRIBE"), 2, "PSUBSCRIBE count");
    const N = 50;
    for (let i = 0; i < N; i++) {
      eq(await T(pub.publish(channel, "m" + i), "PUBLISH"), 1, "receivers of message " + i);
    }
    eq(await T(pub.publish(k + "p:1", "pm"), "PUBLISH to the pattern"), 1, "pattern receivers");
    await waitUntil(() => got.length >= N && pgot.length >= 1, 10000,
                    N + " messages (have " + got.length + ")");
    eq(got, Array.from({ length: N }, (_, i) => [channel, "m" + i]), "messages, in order");
    eq(pgot, [[k + "p:*", k + "p:1", "pm"]], "pattern message");
    let whileSubscribed;
    if (negotiated(sub) === 3) {
      // RESP3 lets a subscribed connection run ordinary commands.
      eq(await T(sub.set(k + "during", "x"), "SET while subscribed"), "OK", "SET while subscribed");
      eq(await T(sub.get(k + "during"), "GET while subscribed"), "x", "GET while subscribed");
      whileSubscribed = "ran";
    } else {
      // ioredis refuses them itself in RESP2 subscriber mode.
      let err = null;
      await sub.get(k + "during").catch((e) => { err = e; });
      check(err && /subscriber mode/.test(err.message), "GET while subscribed (RESP2) was not refused");
      whileSubscribed = "refused by the client";
    }
    eq(await T(sub.unsubscribe(channel), "UNSUBSCRIBE"), 1, "UNSUBSCRIBE count");
    eq(await T(sub.punsubscribe(), "PUNSUBSCRIBE"), 0, "PUNSUBSCRIBE count");
    eq(await T(pub.publish(channel, "late"), "PUBLISH after UNSUBSCRIBE"), 0,
       "receivers after UNSUBSCRIBE");
    await sleep(100);
    eq(got.length, N, "messages received after UNSUBSCRIBE");
    // The subscriber's connection is an ordinary one again.
    eq(await T(sub.set(k + "after", "ok"), "SET after UNSUBSCRIBE"), "OK", "SET after UNSUBSCRIBE");
    eq(await T(sub.get(k + "after"), "GET after UNSUBSCRIBE"), "ok", "GET after UNSUBSCRIBE");
    eq(await T(sub.ping(), "PING"), "PONG", "PING after UNSUBSCRIBE");
    await T(sub.del(k + "after", k + "during"), "cleanup");
    return { protocol: negotiated(sub), messages: got.length, commands_while_subscribed: whileSubscribed };
  },

  async blocking(opts, closers) {
    const waiter = await connect(opts, closers);
    const pusher = await connect(opts, closers);
    const k = keyPrefix("ioredis", "blocking");
    const before = blockedClients(await T(pusher.info("clients"), "INFO clients"));
    const t0 = Date.now();
    const popped = waiter.blpop(k + "q", 10);
    await waitUntil(async () => blockedClients(await pusher.info("clients")) > before, 5000,
                    "the BLPOP to block on the server");
    eq(await T(pusher.rpush(k + "q", "job"), "RPUSH"), 1, "RPUSH");
    eq(await T(popped, "BLPOP woken by RPUSH"), [k + "q", "job"], "BLPOP reply");
    const woken = Date.now() - t0;
    check(woken < 9000, "BLPOP returned only after " + woken + " ms");
    const t1 = Date.now();
    eq(await T(waiter.blpop(k + "empty", 1), "BLPOP that times out"), null, "BLPOP timeout reply");
    const waited = Date.now() - t1;
    check(waited >= 900 && waited < 5000, "BLPOP with a 1 s timeout returned after " + waited + " ms");
    eq(await T(waiter.ping(), "PING"), "PONG", "PING after BLPOP");
    return { protocol: negotiated(waiter), woken_ms: woken, timeout_ms: waited };
  },

  async scripts(opts, closers) {
    const r = await connect(opts, closers);
    const k = keyPrefix("ioredis", "scripts");
    const src = "redis.call('SET', KEYS[1], ARGV[1]); " +
      "return {KEYS[1], redis.call('GET', KEYS[1]), redis.call('INCR', KEYS[2])}";
    eq(await T(r.eval(src, 2, k + "a", k + "n", "v1"), "EVAL"), [k + "a", "v1", 1], "EVAL");
    const sha = await T(r.script("LOAD", src), "SCRIPT LOAD");
    check(/^[0-9a-f]{40}$/.test(sha), "SCRIPT LOAD returned " + sha);
    eq(await T(r.evalsha(sha, 2, k + "a", k + "n", "v2"), "EVALSHA"), [k + "a", "v2", 2], "EVALSHA");
    eq(await T(r.call("EVAL_RO", "return redis.call('GET', KEYS[1])", 1, k + "a"), "EVAL_RO"), "v2",
       "EVAL_RO reads the client's own write");
    r.defineCommand("addAndGet", {
      numberOfKeys: 1,
      lua: "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    });
    eq(await T(r.addAndGet(k + "c", 5), "defined command"), 5, "defineCommand, first call");
    eq(await T(r.addAndGet(k + "c", 7), "defined command"), 12, "defineCommand, second call");
    // A flushed script cache: EVALSHA gets NOSCRIPT, ioredis falls back on EVAL.
    eq(await T(r.script("FLUSH"), "SCRIPT FLUSH"), "OK", "SCRIPT FLUSH");
    eq(await T(r.addAndGet(k + "c", 1), "defined command after SCRIPT FLUSH"), 13,
       "defineCommand after SCRIPT FLUSH");
    const p = await T(r.pipeline().addAndGet(k + "c", 1).addAndGet(k + "c", 1).exec(),
                      "pipelined defined command");
    eq(values(p, "pipelined defined command"), [14, 15], "defineCommand in a pipeline");
    let err = null;
    await r.eval("return redis.error_reply('boom')", 0).catch((e) => { err = e; });
    check(err && /boom/.test(err.message), "script error not reported: " + err);
    await T(r.del(k + "a", k + "n", k + "c"), "cleanup");
    return { protocol: negotiated(r) };
  },

  async scan(opts, closers) {
    const r = await connect(opts, closers);
    const k = keyPrefix("ioredis", "scan");
    const N = 20000;
    const p = r.pipeline();
    for (let i = 0; i < N; i++) p.set(k + i, i);
    const set = values(await withTimeout(p.exec(), 20000, "pipeline of " + N + " SET"), "SET pipeline");
    check(set.length === N && set.every((v) => v === "OK"), "SET pipeline replies");
    const seen = new Map();
    let batches = 0;
    await withTimeout(new Promise((resolve, reject) => {
      const stream = r.scanStream({ match: k + "*", count: 1000 });
      stream.on("data", (keys) => {
        batches++;
        for (const key of keys) seen.set(key, (seen.get(key) || 0) + 1);
      });
      stream.on("end", resolve);
      stream.on("error", reject);
    }), 20000, "scanStream over " + N + " keys");
    const dups = [...seen.entries()].filter(([, n]) => n > 1).map(([key]) => key);
    check(dups.length === 0, dups.length + " key(s) returned more than once, e.g. " + dups.slice(0, 3));
    const missing = [];
    for (let i = 0; i < N && missing.length < 5; i++) if (!seen.has(k + i)) missing.push(k + i);
    check(seen.size === N && missing.length === 0,
          "SCAN returned " + seen.size + " of " + N + " keys; missing e.g. " + missing);
    for (let i = 0; i < N; i += 1000) {
      const keys = Array.from({ length: Math.min(1000, N - i) }, (_, j) => k + (i + j));
      await T(r.unlink(...keys), "cleanup");
    }
    return { protocol: negotiated(r), keys: seen.size, batches };
  },

  async db(opts, closers) {
    const dbn = opts.db || 3;
    const inDb = await connect(opts, closers, { db: dbn });
    const plain = await connect(opts, closers, { db: 0, connectionName: undefined });
    const k = keyPrefix("ioredis", "db");
    eq(await T(inDb.set(k, "in-db"), "SET in db"), "OK", "SET in db " + dbn);
    eq(await T(inDb.get(k), "GET in db"), "in-db", "GET in db " + dbn);
    const pipe = values(await T(inDb.pipeline().incr(k + "c").incr(k + "c").exec(), "pipeline in db"),
                        "pipeline in db");
    eq(pipe, [1, 2], "pipeline in db " + dbn);
    // The plain client's own write comes after those: its reads see them.
    await T(plain.set(k + "marker", "db0"), "SET in db 0");
    eq(await T(plain.get(k), "GET in db 0"), null, "the db " + dbn + " key seen from db 0");
    eq(await T(plain.exists(k, k + "c"), "EXISTS in db 0"), 0, "EXISTS from db 0");
    eq(await T(inDb.get(k + "marker"), "GET marker in db"), null, "the db 0 key seen from db " + dbn);
    const again = await connect(opts, closers, { db: dbn });
    await waitUntil(async () => (await again.get(k)) === "in-db", 5000,
                    "a new db " + dbn + " client to see the key");
    await T(inDb.del(k, k + "c"), "cleanup");
    await T(plain.del(k + "marker"), "cleanup");
    return { protocol: negotiated(inDb), db: dbn };
  },

  async name(opts, closers) {
    const nm = opts.name || "ioredis-check-" + process.pid;
    const r = await connect(opts, closers, { connectionName: nm });
    const anon = await connect(opts, closers, { connectionName: undefined });
    const k = keyPrefix("ioredis", "name");
    eq(await T(r.client("GETNAME"), "CLIENT GETNAME"), nm, "CLIENT GETNAME");
    eq(await T(anon.client("GETNAME"), "CLIENT GETNAME"), null, "CLIENT GETNAME of a client without a name");
    await T(r.set(k, "1"), "SET");
    eq(await T(r.get(k), "GET"), "1", "GET");
    // In a transaction (its own server connection) the name is the same.
    eq(values(await T(r.multi().client("GETNAME").exec(), "GETNAME in MULTI"), "GETNAME in MULTI"),
       [nm], "CLIENT GETNAME inside MULTI");
    eq(await T(r.client("GETNAME"), "CLIENT GETNAME"), nm, "CLIENT GETNAME after EXEC");
    eq(await T(r.client("SETNAME", nm + "-2"), "CLIENT SETNAME"), "OK", "CLIENT SETNAME");
    eq(await T(r.client("GETNAME"), "CLIENT GETNAME"), nm + "-2", "CLIENT GETNAME after SETNAME");
    eq(await T(anon.client("GETNAME"), "CLIENT GETNAME"), null, "the other client's name");
    await T(r.del(k), "cleanup");
    return { protocol: negotiated(r), name: nm };
  },

  // Open --clients connections, one GET each, then report "ready" and keep
  // them open until stdin is closed: the test inspects the proxy meanwhile.
  async idle(opts, closers) {
    const n = opts.clients;
    const clients = [];
    const inner = [];
    closers.push(() => Promise.all(inner.map((close) => close().catch(() => {}))));
    for (let i = 0; i < n; i += 50) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 50); j++) batch.push(connect(opts, inner));
      clients.push(...(await Promise.all(batch)));
    }
    const k = keyPrefix("ioredis", "idle");
    const got = await T(Promise.all(clients.map((r, i) => r.get(k + i))), "one GET per client");
    check(got.every((v) => v === null), "GET of missing keys returned values");
    const protocols = [...new Set(clients.map(negotiated))];
    process.stdout.write(JSON.stringify({ ready: true, clients: clients.length, protocols }) + "\n");
    const why = await holdUntilStdinCloses(Math.max(1000, (opts.timeout - 5) * 1000));
    const alive = clients.filter((r) => r.status === "ready").length;
    check(alive === n, (n - alive) + " idle client(s) lost their connection");
    return { protocol: protocols.length === 1 ? protocols[0] : protocols, clients: n, released_by: why };
  },
};

if (require.main === module) {
  main("ioredis_check.js", "ioredis " + require("ioredis/package.json").version, scenarios);
}

module.exports = { scenarios };
