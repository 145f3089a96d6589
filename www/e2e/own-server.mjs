// A reference server of a test's own, for tests that stop and start it:
// on a port of the test's, serving the built demo, its database in a fresh
// folder that outlives a restart.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * `{ url, start(), stop(), startOn(port), dir }`: `start` runs the server
 * (again) on `port` and resolves once it listens; `stop` kills it at once
 * (SIGKILL: no goodbye to the tabs) and resolves when it is gone;
 * `startOn(port)` starts another process on the same database and port
 * `port` and returns its stop function. `extra` are more server flags.
 */
export function ownServer(port, name, extra = []) {
  const dir = mkdtempSync(join(tmpdir(), `crm-sync-${name}-`));
  let child = null;
  const run = async (p) => {
    const proc = spawn(
      join(ROOT, "target/debug/crm-sync-server"),
      ["--port", String(p), "--db", join(dir, "crm.db"), "--demo", "--sheet", join(dir, "sheet.csv"),
       "--static", join(ROOT, "www/dist"), ...extra],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server on ${p} did not start`)), 30000);
      proc.on("exit", () => reject(new Error(`server on ${p} exited`)));
      proc.stdout.on("data", (d) => {
        if (String(d).includes("listening on")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const exited = new Promise((r) => proc.on("exit", r));
    return async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
    };
  };
  let stopCurrent = null;
  return {
    url: `http://127.0.0.1:${port}`,
    dir,
    async start() {
      stopCurrent = await run(port);
      child = true;
    },
    async stop() {
      if (child) await stopCurrent();
      child = null;
    },
    startOn: run,
  };
}
