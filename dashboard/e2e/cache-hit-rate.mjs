// A measurement, run by hand (not in CI): the query cache's hit rate on the dashboard's own read
// mix, with the dashboard open in a real browser on a busy hub. Starts `hive serve` (SQLite, or
// PostgreSQL with STORE=postgres://...: an empty database of its own) and
// `hive worker --exec cat`, keeps submitting batches of tasks from another loopback address (a
// client other than the browser, as on a real hub), opens the dashboard in Chromium and goes
// through its views as a user would, then prints the API reads the page made and
// `hive_query_cache_lookups_total` before and after.
//
//   HIVE_BIN=target/release/hive node e2e/cache-hit-rate.mjs   # RATE (tasks/s, 500), SECONDS (20 per view), STORE, PAGES (1)
import { spawn } from "node:child_process";
import { request } from "node:http";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const hive = process.env.HIVE_BIN ?? join(root, "target/release/hive");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const rate = Number(process.env.RATE ?? 500);
const perView = Number(process.env.SECONDS ?? 20) * 1000;

const children = [];
const run = (args, env = {}) => {
  const child = spawn(hive, args, { env: { ...process.env, HIVE_LOG: "warn", ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
};
const freePort = () =>
  new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** POST from 127.0.0.2: to the hub, a client other than the browser. */
function submit(port, body) {
  return new Promise((done) => {
    const req = request(
      { host: "127.0.0.1", port, localAddress: "127.0.0.2", method: "POST", path: "/api/v1/tasks/batch", headers: { "content-type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () => done(res.statusCode));
      },
    );
    req.on("error", () => done(0));
    req.end(body);
  });
}

async function lookups(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^hive_query_cache_lookups_total\{query="(\w+)",result="(\w+)"\} (\S+)/);
    if (m) out[`${m[1]} ${m[2]}`] = Number(m[3]);
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), "hive-cache-"));
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
let browser;
try {
  const store = process.env.STORE ? ["--store", process.env.STORE] : [];
  run(["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "data"), ...store]);
  for (let i = 0; ; i++) {
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) break;
    if (i > 300) throw new Error("the hub did not start");
    await sleep(100);
  }
  run(["worker", "--capability", "echo", "--slots", "16", "--exec", "cat", "--name", "busy-worker"], { HIVE_HUB: url });

  // The load: a batch every 100 ms at RATE tasks/s, until the end.
  let loading = true;
  let submitted = 0;
  const loadStarted = Date.now();
  const perBatch = Math.max(1, Math.round(rate / 10));
  const body = JSON.stringify({ tasks: Array.from({ length: perBatch }, (_, n) => ({ capability: "echo", payload: { n } })) });
  const load = (async () => {
    while (loading) {
      const began = Date.now();
      if ((await submit(port, body)) === 201) submitted += perBatch;
      await sleep(Math.max(0, 100 - (Date.now() - began)));
    }
  })();
  await sleep(3000);

  browser = await chromium.launch({ executablePath: browserPath, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
  // PAGES pages (default 1) go through the views at once, as a team with the dashboard open.
  const pages = await Promise.all(
    Array.from({ length: Number(process.env.PAGES ?? 1) }, () => browser.newPage({ viewport: { width: 1400, height: 1000 } })),
  );
  const reads = {};
  for (const page of pages) {
    page.on("request", (r) => {
      const path = new URL(r.url()).pathname;
      if (r.method() === "GET" && path.startsWith("/api/")) {
        const route = path.replace(/\/tasks\/[0-9a-f-]{36}$/, "/tasks/{id}");
        reads[route] = (reads[route] ?? 0) + 1;
      }
    });
  }
  const before = await lookups(url);
  const started = Date.now();
  const visit = async (page) => {
    await page.goto(`${url}/#/overview`);
    await sleep(perView);
    await page.click("nav a[href='#/tasks']");
    await sleep(perView);
    await page.locator("[data-testid=tasks] tbody tr").first().click();
    await sleep(perView / 2);
    await page.click("nav a[href='#/agents']");
    await sleep(perView);
    await page.click("nav a[href='#/alerts']");
    await sleep(perView / 2);
    await page.click("nav a[href='#/tasks']");
    await sleep(perView);
  };
  await Promise.all(pages.map(visit));
  const seconds = (Date.now() - started) / 1000;
  const after = await lookups(url);
  loading = false;
  await load;

  const delta = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]));
  let hits = 0;
  let all = 0;
  for (const [k, n] of Object.entries(delta)) {
    all += n;
    if (k.endsWith(" hit")) hits += n;
  }
  const apiReads = Object.values(reads).reduce((a, b) => a + b, 0);
  const loadSeconds = (Date.now() - loadStarted) / 1000;
  console.log(`dashboard open ${seconds.toFixed(0)} s on a hub taking ${(submitted / loadSeconds).toFixed(0)} tasks/s (offered ${rate}/s)`);
  console.log(`API reads the ${pages.length} page(s) made:`, reads);
  console.log("query cache lookups during the visit:", delta);
  console.log(`hit rate: ${((100 * hits) / Math.max(1, all)).toFixed(1)}% of ${all} lookups; ${((100 * hits) / Math.max(1, apiReads)).toFixed(1)}% of the pages' ${apiReads} API reads answered from memory; ${all - hits} went to the store`);
} finally {
  await browser?.close();
  for (const child of children) child.kill("SIGTERM");
}
