// node-redis (npm package "redis") driven through sentinel-proxy: one
// scenario per run.
//
//   node noderedis_check.js SCENARIO HOST:PORT [--protocol 2|3|default] [--db N]
//        [--name NAME] [--clients N] [--timeout SECONDS]
//
// Scenarios: strings, pipelines, transactions, pubsub, blocking, scripts,
// scan, db, name, idle (see common.js for the options and the output).
// --protocol sets the client's RESP option; default leaves node-redis' own
// (RESP3 in node-redis 6, RESP2 before). The protocol a connection really
// speaks is read from the shape of a raw HGETALL reply (a map in RESP3, a
// flat array in RESP2) and checked against the one asked for.
"use strict";

const { createClient, defineScript, RESP_TYPES, WatchError } = require("redis");
const {
  withTimeout, waitUntil, sleep, check, eq, keyPrefix, binaryValue, main,
  holdUntilStdinCloses,
} = require("./common");

const CMD_MS = 10000;
const DEFAULT_RESP = (() => {
  try {
    return require("@redis/client/dist/lib/RESP/types").DEFAULT_RESP || 2;
  } catch (e) {
    return 2;
  }
})();

const T = (p, what) => withTimeout(p, CMD_MS + 2000, what);

async function connect(opts, closers, extra = {}) {
  const o = {
    socket: {
      host: opts.host,
      port: opts.port,
      connectTimeout: 5000,
      reconnectStrategy: false, // a lost connection fails the check
    },
    database: opts.db,
  };
  if (opts.protocol) o.RESP = opts.protocol;
  if (opts.name) o.name = opts.name;
  Object.assign(o, extra);
  const c = createClient(o);
  c.on("error", () => {}); // errors surface through the commands' promises
  closers.push(() => (c.isOpen ? c.close().catch(() => c.destroy()) : Promise.resolve()));
  await withTimeout(c.connect(), 10000, "connecting to " + opts.host + ":" + opts.port);
  const want = opts.protocol || DEFAULT_RESP;
  const speaks = await negotiated(c);
  check(speaks === want, "the connection speaks RESP" + speaks + ", RESP" + want + " was asked for");
  c.protocol = speaks;
  return c;
}

// 3 when a raw HGETALL of a missing key comes back as an (empty) map, 2 when
// it is an empty array. A read: it changes nothing.
async function negotiated(c) {
  const raw = await T(c.sendCommand(["HGETALL", keyPrefix("node-redis", "proto") + "none"]), "HGETALL");
  if (Array.isArray(raw)) {
    eq(raw, [], "RESP2 HGETALL reply");
    return 2;
  }
  check(raw && typeof raw === "object" && (raw instanceof Map ? raw.size : Object.keys(raw).length) === 0,
        "RESP3 HGETALL reply: " + JSON.stringify(raw));
  return 3;
}

function blockedClients(info) {
  const m = /blocked_clients:(\d+)/.exec(info);
  return m ? Number(m[1]) : 0;
}

const scenarios = {
  async strings(opts, closers) {
    const c = await connect(opts, closers);
    const k = keyPrefix("node-redis", "strings");
    eq(await T(c.set(k + "s", "hello"), "SET"), "OK", "SET");
    eq(await T(c.get(k + "s"), "GET"), "hello", "GET");
    eq(await T(c.get(k + "missing"), "GET missing"), null, "GET of a missing key");
    eq(await T(c.incr(k + "n"), "INCR"), 1, "INCR");
    eq(await T(c.incrBy(k + "n", 41), "INCRBY"), 42, "INCRBY");
    eq(await T(c.get(k + "n"), "GET counter"), "42", "GET counter");
    eq(await T(c.mSet([[k + "a", "1"], [k + "b", "2"], [k + "c", "3"]]), "MSET"), "OK", "MSET");
    eq(await T(c.mGet([k + "a", k + "b", k + "none", k + "c"]), "MGET"), ["1", "2", null, "3"], "MGET");
    const text = "h\u00e9llo \u2713 \u{1F600}";
    await T(c.set(k + "utf8", text), "SET utf8");
    eq(await T(c.get(k + "utf8"), "GET utf8"), text, "UTF-8 value");
    const bin = binaryValue();
    const asBuffers = c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    eq(await T(c.set(k + "bin", bin), "SET binary"), "OK", "SET binary");
    eq(await T(asBuffers.get(k + "bin"), "GET binary"), bin, "binary value");
    eq(await T(c.strLen(k + "bin"), "STRLEN"), bin.length, "STRLEN of the binary value");
    const big = Buffer.alloc(300 * 1024, 7);
    await T(c.set(k + "big", big), "SET 300 KB");
    eq(await T(asBuffers.get(k + "big"), "GET 300 KB"), big, "300 KB value");
    eq(await T(c.del([k + "s", k + "n", k + "a", k + "b", k + "c", k + "utf8", k + "bin", k + "big"]),
               "DEL"), 8, "DEL");
    return { protocol: c.protocol };
  },

  async pipelines(opts, closers) {
    const c = await connect(opts, closers);
    const k = keyPrefix("node-redis", "pipelines");
    // An explicit pipeline (MULTI-less batch) of 100 commands.
    const m = c.multi();
    for (let i = 0; i < 50; i++) m.set(k + i, "v" + i);
    for (let i = 0; i < 50; i++) m.get(k + i);
    const got = await T(m.execAsPipeline(), "pipeline of 50 SET + 50 GET");
    eq(got.length, 100, "pipeline replies");
    eq(got.slice(0, 50), Array(50).fill("OK"), "SET replies");
    eq(got.slice(50), Array.from({ length: 50 }, (_, i) => "v" + i), "GET replies");
    // 100 commands issued at once: node-redis writes them as one batch.
    const incrs = await T(Promise.all(Array.from({ length: 100 }, () => c.incr(k + "counter"))),
                          "100 concurrent INCR");
    eq(incrs, Array.from({ length: 100 }, (_, i) => i + 1), "INCR replies, in order");
    // An error stays in its own slot.
    const mixed = await Promise.allSettled([c.set(k + "str", "x"), c.incr(k + "str"), c.get(k + "str")]);
    eq(mixed[0].value, "OK", "SET before the error");
    check(mixed[1].status === "rejected" && /not an integer/.test(mixed[1].reason.message),
          "INCR of a string: " + JSON.stringify(mixed[1]));
    eq(mixed[2].value, "x", "GET after the error");
    await T(c.del([...Array.from({ length: 50 }, (_, i) => k + i), k + "counter", k + "str"]), "cleanup");
    return { protocol: c.protocol, commands: 100 };
  },

  async transactions(opts, closers) {
    const c = await connect(opts, closers);
    const other = await connect(opts, closers);
    const k = keyPrefix("node-redis", "transactions");
    eq(await T(c.watch(k + "w"), "WATCH"), "OK", "WATCH");
    eq(await T(c.get(k + "w"), "GET under WATCH"), null, "GET under WATCH");
    eq(await T(c.multi().set(k + "w", "1").incr(k + "w").get(k + "w").exec(), "EXEC"), ["OK", 2, "2"],
       "EXEC results");
    // Another connection writes the watched key: EXEC answers null, which
    // node-redis reports as a WatchError.
    eq(await T(c.watch(k + "w"), "WATCH"), "OK", "second WATCH");
    eq(await T(other.set(k + "w", "other"), "SET from the other client"), "OK", "other SET");
    let aborted;
    try {
      aborted = await T(c.multi().set(k + "w", "mine").incr(k + "n").exec(), "aborted EXEC");
    } catch (e) {
      if (!(e instanceof WatchError)) throw e;
      aborted = null;
    }
    eq(aborted, null, "EXEC after the watched key changed");
    eq(await T(other.get(k + "w"), "GET after abort"), "other", "value after the aborted EXEC");
    eq(await T(other.exists(k + "n"), "EXISTS after abort"), 0, "aborted INCR did not run");
    await T(c.watch(k + "w"), "WATCH");
    await T(other.set(k + "w", "again"), "SET");
    eq(await T(c.unwatch(), "UNWATCH"), "OK", "UNWATCH");
    eq(await T(c.multi().incr(k + "n").exec(), "EXEC after UNWATCH"), [1], "EXEC after UNWATCH");
    eq(await T(c.ping(), "PING"), "PONG", "PING after the transactions");
    await T(c.del([k + "w", k + "n"]), "cleanup");
    return { protocol: c.protocol, aborted_exec: "WatchError (EXEC returned null)" };
  },

  async pubsub(opts, closers) {
    const sub = await connect(opts, closers);
    const pub = await connect(opts, closers);
    const k = keyPrefix("node-redis", "pubsub");
    const channel = k + "ch";
    const got = [];
    const pgot = [];
    await T(sub.subscribe(channel, (msg, ch) => got.push([ch, msg])), "SUBSCRIBE");
    await T(sub.pSubscribe(k + "p:*", (msg, ch) => pgot.push([ch, msg])), "PSUBSCRIBE");
    const N = 50;
    for (let i = 0; i < N; i++) {
      eq(await T(pub.publish(channel, "m" + i), "PUBLISH"), 1, "receivers of message " + i);
    }
    eq(await T(pub.publish(k + "p:1", "pm"), "PUBLISH to the pattern"), 1, "pattern receivers");
    await waitUntil(() => got.length >= N && pgot.length >= 1, 10000,
                    N + " messages (have " + got.length + ")");
    eq(got, Array.from({ length: N }, (_, i) => [channel, "m" + i]), "messages, in order");
    eq(pgot, [[k + "p:1", "pm"]], "pattern message");
    let whileSubscribed = "not tried (RESP2)";
    if (sub.protocol === 3) {
      // RESP3 lets a subscribed connection run ordinary commands.
      eq(await T(sub.set(k + "during", "x"), "SET while subscribed"), "OK", "SET while subscribed");
      eq(await T(sub.get(k + "during"), "GET while subscribed"), "x", "GET while subscribed");
      whileSubscribed = "ran";
    }
    await T(sub.unsubscribe(channel), "UNSUBSCRIBE");
    await T(sub.pUnsubscribe(), "PUNSUBSCRIBE");
    check(!sub.isPubSubActive, "the client still thinks it is subscribed");
    eq(await T(pub.publish(channel, "late"), "PUBLISH after UNSUBSCRIBE"), 0,
       "receivers after UNSUBSCRIBE");
    await sleep(100);
    eq(got.length, N, "messages received after UNSUBSCRIBE");
    eq(await T(sub.set(k + "after", "ok"), "SET after UNSUBSCRIBE"), "OK", "SET after UNSUBSCRIBE");
    eq(await T(sub.get(k + "after"), "GET after UNSUBSCRIBE"), "ok", "GET after UNSUBSCRIBE");
    eq(await T(sub.ping(), "PING"), "PONG", "PING after UNSUBSCRIBE");
    await T(sub.del([k + "after", k + "during"]), "cleanup");
    return { protocol: sub.protocol, messages: got.length, commands_while_subscribed: whileSubscribed };
  },

  async blocking(opts, closers) {
    const waiter = await connect(opts, closers);
    const pusher = await connect(opts, closers);
    const k = keyPrefix("node-redis", "blocking");
    const before = blockedClients(await T(pusher.info("clients"), "INFO clients"));
    const t0 = Date.now();
    const popped = waiter.blPop(k + "q", 10);
    await waitUntil(async () => blockedClients(await pusher.info("clients")) > before, 5000,
                    "the BLPOP to block on the server");
    eq(await T(pusher.rPush(k + "q", "job"), "RPUSH"), 1, "RPUSH");
    eq(await T(popped, "BLPOP woken by RPUSH"), { key: k + "q", element: "job" }, "BLPOP reply");
    const woken = Date.now() - t0;
    check(woken < 9000, "BLPOP returned only after " + woken + " ms");
    const t1 = Date.now();
    eq(await T(waiter.blPop(k + "empty", 1), "BLPOP that times out"), null, "BLPOP timeout reply");
    const waited = Date.now() - t1;
    check(waited >= 900 && waited < 5000, "BLPOP with a 1 s timeout returned after " + waited + " ms");
    eq(await T(waiter.ping(), "PING"), "PONG", "PING after BLPOP");
    return { protocol: waiter.protocol, woken_ms: woken, timeout_ms: waited };
  },

  async scripts(opts, closers) {
    const addAndGet = defineScript({
      NUMBER_OF_KEYS: 1,
      SCRIPT: "return redis.call('INCRBY', KEYS[1], ARGV[1])",
      parseCommand(parser, key, by) {
        parser.pushKey(key);
        parser.push(String(by));
      },
      transformReply(reply) {
        return reply;
      },
    });
    const c = await connect(opts, closers, { scripts: { addAndGet } });
    const k = keyPrefix("node-redis", "scripts");
    const src = "redis.call('SET', KEYS[1], ARGV[1]); " +
      "return {KEYS[1], redis.call('GET', KEYS[1]), redis.call('INCR', KEYS[2])}";
    eq(await T(c.eval(src, { keys: [k + "a", k + "n"], arguments: ["v1"] }), "EVAL"),
       [k + "a", "v1", 1], "EVAL");
    const sha = await T(c.scriptLoad(src), "SCRIPT LOAD");
    check(/^[0-9a-f]{40}$/.test(sha), "SCRIPT LOAD returned " + sha);
    eq(await T(c.evalSha(sha, { keys: [k + "a", k + "n"], arguments: ["v2"] }), "EVALSHA"), [k + "a", "v2", 2],
       "EVALSHA");
    eq(await T(c.evalRo("return redis.call('GET', KEYS[1])", { keys: [k + "a"] }), "EVAL_RO"), "v2",
       "EVAL_RO reads the client's own write");
    eq(await T(c.addAndGet(k + "c", 5), "defined script"), 5, "defineScript, first call");
    eq(await T(c.addAndGet(k + "c", 7), "defined script"), 12, "defineScript, second call");
    // A flushed script cache: EVALSHA gets NOSCRIPT, node-redis falls back on EVAL.
    eq(await T(c.scriptFlush(), "SCRIPT FLUSH"), "OK", "SCRIPT FLUSH");
    eq(await T(c.addAndGet(k + "c", 1), "defined script after SCRIPT FLUSH"), 13,
       "defineScript after SCRIPT FLUSH");
    eq(await T(c.multi().addAndGet(k + "c", 1).addAndGet(k + "c", 1).exec(), "defined script in MULTI"),
       [14, 15], "defineScript in a transaction");
    let err = null;
    await c.eval("return redis.error_reply('boom')").catch((e) => { err = e; });
    check(err && /boom/.test(err.message), "script error not reported: " + err);
    await T(c.del([k + "a", k + "n", k + "c"]), "cleanup");
    return { protocol: c.protocol };
  },

  async scan(opts, closers) {
    const c = await connect(opts, closers);
    const k = keyPrefix("node-redis", "scan");
    const N = 20000;
    const m = c.multi();
    for (let i = 0; i < N; i++) m.set(k + i, String(i));
    const set = await withTimeout(m.execAsPipeline(), 20000, "pipeline of " + N + " SET");
    check(set.length === N && set.every((v) => v === "OK"), "SET pipeline replies");
    const seen = new Map();
    let batches = 0;
    await withTimeout((async () => {
      for await (const keys of c.scanIterator({ MATCH: k + "*", COUNT: 1000 })) {
        batches++;
        for (const key of Array.isArray(keys) ? keys : [keys]) seen.set(key, (seen.get(key) || 0) + 1);
      }
    })(), 20000, "scanIterator over " + N + " keys");
    const dups = [...seen.entries()].filter(([, n]) => n > 1).map(([key]) => key);
    check(dups.length === 0, dups.length + " key(s) returned more than once, e.g. " + dups.slice(0, 3));
    const missing = [];
    for (let i = 0; i < N && missing.length < 5; i++) if (!seen.has(k + i)) missing.push(k + i);
    check(seen.size === N && missing.length === 0,
          "SCAN returned " + seen.size + " of " + N + " keys; missing e.g. " + missing);
    for (let i = 0; i < N; i += 1000) {
      await T(c.unlink(Array.from({ length: Math.min(1000, N - i) }, (_, j) => k + (i + j))), "cleanup");
    }
    return { protocol: c.protocol, keys: seen.size, batches };
  },

  async db(opts, closers) {
    const dbn = opts.db || 3;
    const inDb = await connect(opts, closers, { database: dbn });
    const plain = await connect(opts, closers, { database: 0, name: undefined });
    const k = keyPrefix("node-redis", "db");
    eq(await T(inDb.set(k, "in-db"), "SET in db"), "OK", "SET in db " + dbn);
    eq(await T(inDb.get(k), "GET in db"), "in-db", "GET in db " + dbn);
    eq(await T(inDb.multi().incr(k + "c").incr(k + "c").execAsPipeline(), "pipeline in db"), [1, 2],
       "pipeline in db " + dbn);
    // The plain client's own write comes after those: its reads see them.
    await T(plain.set(k + "marker", "db0"), "SET in db 0");
    eq(await T(plain.get(k), "GET in db 0"), null, "the db " + dbn + " key seen from db 0");
    eq(await T(plain.exists([k, k + "c"]), "EXISTS in db 0"), 0, "EXISTS from db 0");
    eq(await T(inDb.get(k + "marker"), "GET marker in db"), null, "the db 0 key seen from db " + dbn);
    const again = await connect(opts, closers, { database: dbn });
    await waitUntil(async () => (await again.get(k)) === "in-db", 5000,
                    "a new db " + dbn + " client to see the key");
    await T(inDb.del([k, k + "c"]), "cleanup");
    await T(plain.del(k + "marker"), "cleanup");
    return { protocol: inDb.protocol, db: dbn };
  },

  async name(opts, closers) {
    const nm = opts.name || "node-redis-check-" + process.pid;
    // In RESP3 node-redis sends the name in HELLO 3 SETNAME, in RESP2 with CLIENT SETNAME.
    const c = await connect(opts, closers, { name: nm });
    const anon = await connect(opts, closers, { name: undefined });
    const k = keyPrefix("node-redis", "name");
    eq(await T(c.clientGetName(), "CLIENT GETNAME"), nm, "CLIENT GETNAME");
    eq(await T(anon.clientGetName(), "CLIENT GETNAME"), null, "CLIENT GETNAME of a client without a name");
    await T(c.set(k, "1"), "SET");
    eq(await T(c.get(k), "GET"), "1", "GET");
    eq(await T(c.multi().clientGetName().exec(), "GETNAME in MULTI"), [nm], "CLIENT GETNAME inside MULTI");
    eq(await T(c.clientGetName(), "CLIENT GETNAME"), nm, "CLIENT GETNAME after EXEC");
    eq(await T(c.clientSetName(nm + "-2"), "CLIENT SETNAME"), "OK", "CLIENT SETNAME");
    eq(await T(c.clientGetName(), "CLIENT GETNAME"), nm + "-2", "CLIENT GETNAME after SETNAME");
    eq(await T(anon.clientGetName(), "CLIENT GETNAME"), null, "the other client's name");
    await T(c.del(k), "cleanup");
    return { protocol: c.protocol, name: nm };
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
    const k = keyPrefix("node-redis", "idle");
    const got = await T(Promise.all(clients.map((c, i) => c.get(k + i))), "one GET per client");
    check(got.every((v) => v === null), "GET of missing keys returned values");
    const protocols = [...new Set(clients.map((c) => c.protocol))];
    process.stdout.write(JSON.stringify({ ready: true, clients: clients.length, protocols }) + "\n");
    const why = await holdUntilStdinCloses(Math.max(1000, (opts.timeout - 5) * 1000));
    const alive = clients.filter((c) => c.isReady).length;
    check(alive === n, (n - alive) + " idle client(s) lost their connection");
    return { protocol: protocols.length === 1 ? protocols[0] : protocols, clients: n, released_by: why };
  },
};

if (require.main === module) {
  main("noderedis_check.js", "node-redis " + require("redis/package.json").version, scenarios);
}

module.exports = { scenarios };
