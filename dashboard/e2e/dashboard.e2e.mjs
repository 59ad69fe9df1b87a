// End to end in a real browser: a real hub (`hive serve`) with a real worker (`hive worker
// --exec cat`), the dashboard it serves opened in Debian's Chromium through playwright-core.
// Checks: the page loads with no console errors, the charts draw, an LLM provider's tokens show
// (a provider the script serves) and a task page shows its answer as it is written, submitting
// tasks changes the counters and the task list, a task is cancelled from its page, a consensus
// task shows its votes, the hubs view lists the hub, an alert that fires appears, the page
// reconnects by itself when the hub restarts, and a hub with authentication on makes the page
// ask for a token, with which it then works. Saves a screenshot to target/dashboard-e2e.png (CI
// keeps it as an artifact).
//
// Needs the hive binary (HIVE_BIN, default target/debug/hive) and Chromium (CHROMIUM, default
// /usr/bin/chromium). Run by .ci/run after `cargo test`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const hive = process.env.HIVE_BIN ?? join(root, "target/debug/hive");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const screenshot = join(root, "target/dashboard-e2e.png");
const LIMIT_MS = 30_000;

const children = [];
function run(args, env = {}) {
  const child = spawn(hive, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

function freePort() {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** Polls `probe` until it returns something truthy; a bound against hanging, not a timing check. */
async function until(what, probe) {
  const deadline = Date.now() + LIMIT_MS;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// An LLM provider speaking the chat-completions API with streamed answers: "buzz" to any
// prompt, but "tell a story" is held until the script lets it go (`story.begin`, `story.end`),
// so that the task page can be watched while it is written.
const story = {};
story.began = new Promise((done) => (story.begin = done));
story.ended = new Promise((done) => (story.end = done));
const chunk = (delta, more = {}) => `data: ${JSON.stringify({ model: "tiny", choices: [{ delta }], ...more })}\n\n`;
const provider = createHttpServer((request, response) => {
  let body = "";
  request.on("data", (piece) => (body += piece));
  request.on("end", async () => {
    const prompt = JSON.parse(body).messages.at(-1).content;
    response.writeHead(200, { "content-type": "text/event-stream" });
    if (prompt === "tell a story") {
      await story.began;
      response.write(chunk({ content: "Once upon a time" }));
      await story.ended;
    } else {
      response.write(chunk({ content: "buzz" }));
    }
    response.write(chunk({}, { choices: [{ delta: {}, finish_reason: "stop" }] }));
    response.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 1 } })}\n\n`);
    response.end("data: [DONE]\n\n");
  });
});
await new Promise((done) => provider.listen(0, "127.0.0.1", done));

const dir = mkdtempSync(join(tmpdir(), "hive-e2e-"));
const config = join(dir, "hive.toml");
writeFileSync(
  config,
  `[[llm.providers]]
name = "fake"
base_url = "http://127.0.0.1:${provider.address().port}/v1"
models = ["tiny"]
stream = true
[llm.providers.prices.tiny]
prompt_per_1k = 1.0
completion_per_1k = 2.0
[metrics]
interval_ms = 200
[alerts]
defaults = false
[[alerts.rules]]
name = "e2e_backlog"
metric = "queued_tasks"
above = 4.0
severity = "critical"
`,
);
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
let browser;
try {
  const serve = () =>
    run(["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "data"), "--config", config], { HIVE_LOG: "warn" });
  let hub = serve();
  await until("the hub", async () => (await fetch(`${url}/readyz`)).ok);
  run(["worker", "--capability", "echo", "--slots", "4", "--exec", "cat", "--name", "e2e-worker"], { HIVE_HUB: url, HIVE_LOG: "warn" });

  browser = await chromium.launch({
    executablePath: browserPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));

  await page.goto(`${url}/#/overview`);
  await until("the live connection", async () => (await page.textContent("[data-testid=live-status]")) === "live");
  // The worker, the built-in executors and the LLM provider.
  await until("the agents online", async () => (await page.textContent("[data-testid=agents-online]")) === "3");

  // The charts draw: six uPlot canvases, with pixels on them.
  await until("six charts", async () => (await page.locator(".uplot canvas").count()) === 6);
  const drawn = await page.evaluate(() =>
    [...document.querySelectorAll(".uplot canvas")].every((c) => {
      const { data } = c.getContext("2d").getImageData(0, 0, c.width, c.height);
      return data.some((v, i) => i % 4 === 3 && v > 0);
    }),
  );
  check(drawn, "every chart drew something");
  check(/%$/.test(await page.textContent("[data-testid=query-cache]")), "the query cache's hit rate shows");

  // A task for the LLM provider: its tokens show on the overview.
  const asked = await fetch(`${url}/api/v1/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ capability: "llm:fake/tiny", payload: { prompt: "what do bees say?" } }),
  });
  check(asked.status === 201, `LLM task submit: ${asked.status}`);
  await until("the LLM tokens", async () => {
    const row = await page.textContent("[data-testid=llm-usage] tbody tr");
    return row?.includes("llm:fake/tiny") && row.includes("7") && row.includes("0.0090");
  });

  // A task being written: the task page shows the text as it arrives.
  const writing = await (
    await fetch(`${url}/api/v1/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ capability: "llm:fake/tiny", payload: { prompt: "tell a story" } }),
    })
  ).json();
  await page.click("nav a[href='#/tasks']");
  await page.fill(".filters input", "llm:fake/tiny");
  await until("the story task running", async () => (await page.textContent("[data-testid=tasks] tbody tr"))?.includes("running"));
  await page.locator("[data-testid=tasks] tbody tr").first().click();
  await until("its detail", async () => (await page.textContent("[data-testid=task-detail]"))?.includes(writing.id));
  story.begin();
  await until("the text as it is written", async () => (await page.textContent("[data-testid=task-progress]"))?.includes("Once upon a time"));
  story.end();
  await until("the story finished", async () => (await page.textContent("[data-testid=task-detail]"))?.includes("succeeded"));
  await page.fill(".filters input", "");
  await page.click("nav a[href='#/overview']");

  // Submitting tasks moves the counters.
  const before = Number(await page.textContent("[data-testid=submitted]"));
  const tasks = Array.from({ length: 20 }, (_, n) => ({ capability: "echo", payload: { n } }));
  const created = await fetch(`${url}/api/v1/tasks/batch`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ tasks }),
  });
  check(created.status === 201, `batch submit: ${created.status}`);
  await until("20 more tasks submitted", async () => Number(await page.textContent("[data-testid=submitted]")) === before + 20);
  await until("20 succeeded", async () => Number(await page.textContent("[data-testid=succeeded]")) >= 20);

  // The task list shows them; a task opens with its attempts.
  await page.click("nav a[href='#/tasks']");
  await until("the task list", async () => (await page.locator("[data-testid=tasks] tbody tr").count()) >= 20);
  check((await page.textContent("[data-testid=tasks]")).includes("succeeded"), "the list shows succeeded tasks");
  await page.locator("[data-testid=tasks] tbody tr").first().click();
  await until("a task's detail", async () => (await page.textContent("[data-testid=task-detail]"))?.includes("attempts"));

  // The agents view shows what routing learned of the worker's name, and its share of traffic
  // over time.
  await page.click("nav a[href='#/agents']");
  await until("the worker's routing estimate", async () => {
    const text = await page.textContent("[data-testid=agents]");
    return text?.includes("e2e-worker") && /echo: [\d.]+% ok, [\d.]+ m?s, [\d.]+% of traffic/.test(text);
  });
  await until("the share chart", async () => (await page.locator("[data-chart^='share of recent assignments'] canvas").count()) > 0);
  // The hubs view: this hub alone in its SQLite data directory.
  await page.click("nav a[href='#/hubs']");
  await until("the hub list", async () => (await page.locator("[data-testid=hubs] tbody tr").count()) === 1);
  check((await page.textContent("[data-testid=hubs-summary]")).includes("1 hub on sqlite"), "the hubs view names the store");
  check((await page.textContent("[data-testid=hubs]")).includes(`127.0.0.1:${port}`), "the hubs view shows the hub's address");
  await page.click("nav a[href='#/tasks']");

  // An alert that fires appears: five tasks no agent can take.
  const stuck = Array.from({ length: 5 }, () => ({ capability: "nobody" }));
  await fetch(`${url}/api/v1/tasks/batch`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ tasks: stuck }),
  });
  // A queued task is cancelled from its detail.
  const doomed = await (
    await fetch(`${url}/api/v1/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ capability: "nobody-either" }),
    })
  ).json();
  await page.fill(".filters input", "nobody-either");
  await until("the queued task listed", async () => (await page.textContent("[data-testid=tasks]")).includes("queued"));
  await page.locator("[data-testid=tasks] tbody tr").first().click();
  await page.click("text=cancel task");
  await until("the task cancelled", async () => {
    const task = await (await fetch(`${url}/api/v1/tasks/${doomed.id}`)).json();
    return task.status === "cancelled";
  });
  await until("the detail to say so", async () => (await page.textContent("[data-testid=task-detail]"))?.includes("cancelled"));

  await page.click("nav a[href='#/alerts']");
  await until("the alert firing", async () => {
    const text = await page.textContent("[data-testid=active-alerts]");
    return text?.includes("e2e_backlog") && text.includes("firing");
  });
  check((await page.textContent("[data-testid=alert-history]")).includes("firing"), "the history has it");
  check((await page.textContent("nav")).includes("1"), "the alerts tab shows a badge");

  // A consensus task: a second worker of another name, both answer alike; the detail shows the
  // votes. The second worker leaves again before the restart below.
  const second = run(["worker", "--capability", "echo", "--exec", "cat", "--name", "e2e-second"], { HIVE_HUB: url, HIVE_LOG: "warn" });
  const agreed = await (
    await fetch(`${url}/api/v1/tasks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ capability: "echo", payload: { q: "agree?" }, replicas: 2, quorum: 2 }),
    })
  ).json();
  await until("the consensus task decided", async () => {
    const task = await (await fetch(`${url}/api/v1/tasks/${agreed.id}`)).json();
    return task.status === "succeeded";
  });
  await page.click("nav a[href='#/tasks']");
  await page.fill(".filters input", "echo");
  await until("the consensus task listed", async () => (await page.textContent("[data-testid=tasks] tbody tr")).includes(agreed.id.slice(0, 8)));
  await page.locator("[data-testid=tasks] tbody tr").first().click();
  await until("its votes", async () => (await page.textContent("[data-testid=votes]"))?.includes("2 of 2 votes agree"));
  const secondGone = new Promise((done) => second.once("exit", done));
  second.kill("SIGTERM");
  await secondGone;

  await page.click("nav a[href='#/overview']");
  await until("the queue on the overview", async () => (await page.textContent("[data-testid=queued]")) === "5");
  await page.screenshot({ path: screenshot, fullPage: true });

  // The hub restarts: the page notices, and goes live again by itself.
  const beforeRestart = errors.length;
  const stopped = new Promise((done) => hub.once("exit", done));
  hub.kill("SIGTERM");
  await stopped;
  await until("the page to notice", async () => (await page.textContent("[data-testid=live-status]")) !== "live");
  hub = serve();
  await until("the page live again", async () => (await page.textContent("[data-testid=live-status]")) === "live");
  await until("the worker back", async () => (await page.textContent("[data-testid=agents-online]")) === "3");
  // While the hub was down the browser logs its refused connections; nothing else may appear.
  const refused = (e) => e.includes("WebSocket connection to") || e.includes("ERR_CONNECTION_REFUSED");
  const during = errors.splice(beforeRestart).filter((e) => !refused(e));
  errors.push(...during);
  check(errors.length === 0, `console errors:\n${errors.join("\n")}`);

  // A hub with authentication on: the page asks for a token, then works with it.
  const authPort = await freePort();
  const authUrl = `http://127.0.0.1:${authPort}`;
  const authDir = join(dir, "auth-data");
  run(["serve", "--listen", `127.0.0.1:${authPort}`, "--data-dir", authDir, "--auth"], { HIVE_LOG: "warn" });
  await until("the hub with authentication", async () => (await fetch(`${authUrl}/readyz`)).ok);
  const admin = readFileSync(join(authDir, "admin.token"), "utf8").trim();
  const asAdmin = { "content-type": "application/json", authorization: `Bearer ${admin}` };
  const viewer = await (
    await fetch(`${authUrl}/api/v1/tokens`, { method: "POST", headers: asAdmin, body: JSON.stringify({ name: "viewer", role: "read" }) })
  ).json();
  const submitted = await fetch(`${authUrl}/api/v1/tasks`, { method: "POST", headers: asAdmin, body: JSON.stringify({ capability: "later" }) });
  check(submitted.status === 201, `submit with a token: ${submitted.status}`);
  const authPage = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await authPage.goto(`${authUrl}/#/tasks`);
  await until("the token prompt", async () => (await authPage.locator("[data-testid=token-prompt]").count()) === 1);
  await authPage.fill("[data-testid=token-prompt] input", viewer.token);
  await authPage.click("[data-testid=token-prompt] button");
  await until("live with the token", async () => (await authPage.textContent("[data-testid=live-status]")) === "live");
  check((await authPage.locator("[data-testid=token-prompt]").count()) === 0, "the prompt is gone");
  await until("the task listed", async () => (await authPage.locator("[data-testid=tasks] tbody tr").count()) === 1);
  await authPage.locator("[data-testid=tasks] tbody tr").first().click();
  await until("who submitted it", async () => (await authPage.textContent("[data-testid=task-detail]"))?.includes("by admin"));
  console.log(`dashboard e2e passed; screenshot in ${screenshot}`);
} finally {
  await browser?.close();
  for (const child of children) child.kill("SIGTERM");
  provider.close();
}
