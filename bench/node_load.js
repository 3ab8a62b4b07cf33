// node_load.js - a load of real Node.js clients for bench/clients.py: N
// ioredis (or node-redis) clients, each sending GETs one at a time (no
// pipelining) for a fixed time; prints {"ops":..,"errors":..,"seconds":..}.
//
//   NODE_PATH=test/clients/node_modules node bench/node_load.js \
//       --port P --client ioredis|node-redis --protocol default|2|3 \
//       --clients 50 --seconds 5 --keys 1000
"use strict";

function arg(name, dflt) {
  const i = process.argv.indexOf("--" + name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const port = Number(arg("port"));
const kind = arg("client", "ioredis");
const protocol = arg("protocol", "default");
const nclients = Number(arg("clients", "50"));
const seconds = Number(arg("seconds", "5"));
const nkeys = Number(arg("keys", "1000"));

async function connect() {
  if (kind === "ioredis") {
    const Redis = require("ioredis");
    const opts = { host: "127.0.0.1", port, maxRetriesPerRequest: 1 };
    if (protocol !== "default") opts.protocol = Number(protocol);
    const c = new Redis(opts);
    await new Promise((resolve, reject) => {
      c.once("ready", resolve);
      c.once("error", reject);
    });
    return { get: (k) => c.get(k), close: () => c.quit() };
  }
  const { createClient } = require("redis");
  const opts = { socket: { host: "127.0.0.1", port } };
  if (protocol !== "default") opts.RESP = Number(protocol);
  const c = createClient(opts);
  c.on("error", () => {});
  await c.connect();
  return { get: (k) => c.get(k), close: () => c.quit() };
}

async function main() {
  const clients = await Promise.all(Array.from({ length: nclients }, connect));
  let ops = 0;
  let errors = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  await Promise.all(
    clients.map(async (c, i) => {
      let k = i;
      while (process.hrtime.bigint() < end) {
        try {
          await c.get("key:" + (k++ % nkeys));
          ops++;
        } catch (e) {
          errors++;
        }
      }
    }),
  );
  const took = Number(process.hrtime.bigint() - start) / 1e9;
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  process.stdout.write(JSON.stringify({ ops, errors, seconds: took }) + "\n");
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + "\n");
  process.exit(1);
});
