// W3C WebDriver over plain HTTP, for the engines Playwright cannot drive
// here: Firefox ESR through geckodriver and WebKitGTK through
// WebKitWebDriver (docs/guide/browsers.md). Only what the demo smoke needs:
// sessions, windows, navigation, elements found by CSS, clicks, typing and
// a script. No npm package: the protocol is a handful of JSON requests.
import { spawn, execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";

/** The W3C key of an element reference in a response. */
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

/** The engines of the smoke: how to start each driver, what to ask it for. */
export const ENGINES = {
  firefox: {
    command: () => [which("geckodriver"), ["--port", "PORT", "--log", "error"]],
    capabilities: {
      browserName: "firefox",
      "moz:firefoxOptions": {
        binary: which("firefox-esr"),
        args: ["-headless"],
        // The prompt of navigator.storage.persist() answered yes, as a
        // person would from the settings page's button.
        prefs: { "dom.storageManager.prompt.testing": true, "dom.storageManager.prompt.testing.allow": true },
      },
    },
  },
  webkit: {
    // MiniBrowser needs a display: Xvfb, a free one picked by xvfb-run.
    command: () => [which("xvfb-run"), ["-a", "/usr/bin/WebKitWebDriver", "--port=PORT"]],
    capabilities: {},
  },
};

function which(name) {
  try {
    return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || name;
  } catch {
    return name;
  }
}

/** Waits `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the driver of `engine` on `port` and waits until it answers
 * `/status`. Returns `{ url, stop }`; `stop` ends the driver and what it
 * started (Xvfb, the browser) by process group.
 */
export async function startDriver(engine, port) {
  const [command, args] = ENGINES[engine].command();
  const child = spawn(command, args.map((a) => a.replace("PORT", String(port))), {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => child.on("exit", r));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await Promise.race([exited, sleep(3000)]);
  };
  for (let i = 0; i < 150; i += 1) {
    if (child.exitCode !== null) throw new Error(`${engine} driver exited: ${stderr}`);
    try {
      const r = await fetch(`${url}/status`);
      if (r.ok && (await r.json()).value?.ready !== false) return { url, stop };
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  await stop();
  throw new Error(`${engine} driver did not start on ${port}: ${stderr}`);
}

/** A WebDriver error, with the driver's code and message. */
class WebDriverError extends Error {}

async function call(url, method, path, body) {
  const r = await fetch(url + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json().catch(() => ({}));
  if (!r.ok) {
    throw new WebDriverError(`${method} ${path}: ${json.value?.error ?? r.status}: ${json.value?.message ?? ""}`);
  }
  return json.value;
}

/** A browser session of one engine. */
export class Session {
  static async start(driverUrl, engine) {
    const value = await call(driverUrl, "POST", "/session", {
      capabilities: { alwaysMatch: ENGINES[engine].capabilities },
    });
    const session = new Session(driverUrl, value.sessionId);
    session.browser = `${value.capabilities?.browserName ?? engine} ${value.capabilities?.browserVersion ?? ""}`.trim();
    await session.cmd("POST", "/timeouts", { script: 30000, pageLoad: 60000, implicit: 0 });
    return session;
  }

  constructor(driverUrl, id) {
    this.base = `${driverUrl}/session/${id}`;
    this.driverUrl = driverUrl;
    this.id = id;
  }

  cmd(method, path, body) {
    return call(this.base, method, path, body);
  }

  async quit() {
    await call(this.driverUrl, "DELETE", `/session/${this.id}`).catch(() => {});
  }

  goto(url) {
    return this.cmd("POST", "/url", { url });
  }

  /**
   * Reloads the page as a person does. Not WebDriver's `/refresh`:
   * geckodriver's bypasses the service worker, so with the server down it
   * ends on an error page where a person's reload opens the app.
   */
  async reload() {
    await this.run(() => {
      window.beforeReload = true;
      setTimeout(() => location.reload(), 0);
    });
    // Until the new page is there (the old one marked itself).
    for (let i = 0; i < 300; i += 1) {
      await sleep(100);
      const fresh = await this.run(() => !window.beforeReload && document.readyState === "complete").catch(() => false);
      if (fresh) return;
    }
    throw new Error("the page did not reload");
  }

  /** Runs `fn(...args)` in the page; returns what it returns (awaited). */
  run(fn, ...args) {
    return this.cmd("POST", "/execute/async", {
      script: `const done = arguments[arguments.length - 1];
        Promise.resolve((${fn}).apply(null, Array.prototype.slice.call(arguments, 0, -1)))
          .then((v) => done({ ok: v === undefined ? null : v }), (e) => done({ error: String(e && e.stack || e) }));`,
      args,
    }).then((r) => {
      if (r && "error" in r) throw new Error(r.error);
      return r?.ok;
    });
  }

  /** The current window and a new one (a second tab of the same browser). */
  async newWindow() {
    const { handle } = await this.cmd("POST", "/window/new", { type: "tab" });
    return handle;
  }

  window() {
    return this.cmd("GET", "/window");
  }

  switchTo(handle) {
    return this.cmd("POST", "/window", { handle });
  }

  /** The first element matching `css`, or null. */
  async find(css) {
    const found = await this.cmd("POST", "/elements", { using: "css selector", value: css });
    return found.length ? found[0][ELEMENT] : null;
  }

  /** Waits until `css` matches (and, with `text`, an element's text matches it). */
  async waitFor(css, { text, timeout = 15000 } = {}) {
    const end = Date.now() + timeout;
    let last = "";
    for (;;) {
      const el = await this.find(css).catch(() => null);
      if (el) {
        if (!text) return el;
        last = await this.cmd("GET", `/element/${el}/text`).catch(() => "");
        if (text instanceof RegExp ? text.test(last) : last.includes(text)) return el;
      }
      if (Date.now() > end) {
        throw new Error(`timed out waiting for ${css}${text ? ` with text ${text} (last: ${JSON.stringify(last)})` : ""}`);
      }
      await sleep(100);
    }
  }

  /** Waits until nothing matches `css`. */
  async waitGone(css, timeout = 15000) {
    const end = Date.now() + timeout;
    while (await this.find(css).catch(() => null)) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${css} to go`);
      await sleep(100);
    }
  }

  /**
   * Clicks the element, first scrolled to the middle of the view: a driver
   * scrolls it only to an edge, where a sticky table header covers it.
   */
  async click(css) {
    const el = await this.waitFor(css);
    await this.cmd("POST", "/execute/sync", {
      script: "arguments[0].scrollIntoView({ block: 'center' });",
      args: [{ [ELEMENT]: el }],
    });
    await this.cmd("POST", `/element/${el}/click`, {});
  }

  /** Replaces an input's value by typing `value` into it. */
  async fill(css, value) {
    const el = await this.waitFor(css);
    // Erased with keys, as a person does: WebDriver's clear also takes the
    // focus away, and a page that re-renders on focus changes (the customer
    // dialog tells others which field is in focus) puts the old value back
    // before the typing, since the clear never reached React.
    const current = await this.cmd("GET", `/element/${el}/property/value`);
    const erase = "\uE010" + "\uE003".repeat(String(current ?? "").length);
    await this.cmd("POST", `/element/${el}/value`, { text: erase + value });
  }

  /** Saves a PNG of the current window to `path`. */
  async screenshot(path) {
    const png = await this.cmd("GET", "/screenshot");
    writeFileSync(path, Buffer.from(png, "base64"));
  }

  async text(css) {
    const el = await this.waitFor(css);
    return this.cmd("GET", `/element/${el}/text`);
  }
}
