import { useEffect, useState } from "react";
import { useCrm } from "crm-sync/react";
import { explain } from "../lib";
import { WideTable } from "../components/WideTable";

/** `GET /api/metrics` of the reference server (server/src/metrics.rs). */
export interface ServerFigures {
  routes: { method: string; route: string; requests: number; errors: number; p50Ms: number; p95Ms: number }[];
  commits: number;
  conflicts: number;
  conflictRate: number;
  idempotentReplays: number;
  syncJobs: {
    queued: number;
    queuedPerUser: Record<string, number>;
    running: number;
    completed: number;
    failed: number;
    cancelled: number;
    meanDurationMs: number;
  };
  eventStreams: number;
}

/** One reading, for the plots. */
export interface Reading {
  at: number;
  requests: number;
  errors: number;
  commits: number;
  conflicts: number;
}

const REFRESH_MS = 2000;
/** The plot covers this much time. */
const WINDOW_MS = 10 * 60 * 1000;

// Kept outside the component, so leaving the page and coming back keeps
// the plot's last minutes.
const readings: Reading[] = [];

function totals(f: ServerFigures): Reading {
  let requests = 0;
  let errors = 0;
  for (const r of f.routes) {
    requests += r.requests;
    errors += r.errors;
  }
  return { at: Date.now(), requests, errors, commits: f.commits, conflicts: f.conflicts };
}

function isFigures(v: unknown): v is ServerFigures {
  const f = v as ServerFigures | null;
  return !!f && Array.isArray(f.routes) && typeof f.commits === "number" && typeof f.syncJobs === "object";
}

/** The server's figures, read again every REFRESH_MS while the page is open. */
export function useServerFigures(): { figures: ServerFigures | null; error: string | null; plotted: Reading[] } {
  const crm = useCrm();
  const [figures, setFigures] = useState<ServerFigures | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [plotted, setPlotted] = useState<Reading[]>(() => [...readings]);
  useEffect(() => {
    let live = true;
    async function read() {
      try {
        const res = await fetch("/api/metrics", { headers: { Authorization: `Bearer ${crm.token}` } });
        if (!res.ok) throw new Error(`the server answered ${res.status}`);
        const body: unknown = await res.json();
        if (!isFigures(body)) throw new Error("the server's figures have an unknown shape");
        if (!live) return;
        readings.push(totals(body));
        while (readings.length > 0 && readings[0].at < Date.now() - WINDOW_MS) readings.shift();
        setFigures(body);
        setPlotted([...readings]);
        setError(null);
      } catch (e) {
        if (live) setError(explain(e));
      }
    }
    void read();
    const timer = window.setInterval(read, REFRESH_MS);
    return () => {
      live = false;
      window.clearInterval(timer);
    };
  }, [crm]);
  return { figures, error, plotted };
}

const W = 640;
const H = 160;
const PAD = 28;

/**
 * Two counts per refresh over the last minutes, as plain SVG: `main` (drawn
 * as the first series) and conflicts; `words` names `main` for people.
 */
export function ActivityPlot({
  plotted,
  main,
  words,
}: {
  plotted: Reading[];
  main: "requests" | "commits";
  words: string;
}) {
  const steps = plotted.slice(1).map((r, i) => ({
    at: r.at,
    requests: Math.max(0, r[main] - plotted[i][main]),
    conflicts: Math.max(0, r.conflicts - plotted[i].conflicts),
  }));
  const now = plotted.length > 0 ? plotted[plotted.length - 1].at : Date.now();
  const top = Math.max(1, ...steps.map((s) => s.requests));
  const x = (at: number) => PAD + ((W - 2 * PAD) * (at - (now - WINDOW_MS))) / WINDOW_MS;
  const y = (v: number) => H - PAD - ((H - 2 * PAD) * v) / top;
  const line = (pick: (s: (typeof steps)[number]) => number) =>
    steps.map((s) => `${x(s.at).toFixed(1)},${y(pick(s)).toFixed(1)}`).join(" ");
  const minutes = WINDOW_MS / 60000;
  return (
    <figure className="plot">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`${words} and conflicts every ${REFRESH_MS / 1000} s over the last ${minutes} minutes; at most ${top} ${words.toLowerCase()}`}
        data-testid="activity-plot"
        data-points={steps.length}
      >
        <line x1={PAD} y1={H - PAD} x2={W - PAD} y2={H - PAD} className="axis" />
        <line x1={PAD} y1={PAD} x2={PAD} y2={H - PAD} className="axis" />
        <text x={PAD - 4} y={PAD + 4} textAnchor="end" className="tick">
          {top}
        </text>
        <text x={PAD - 4} y={H - PAD} textAnchor="end" className="tick">
          0
        </text>
        <text x={PAD} y={H - 8} className="tick">
          −{minutes} min
        </text>
        <text x={W - PAD} y={H - 8} textAnchor="end" className="tick">
          now
        </text>
        {steps.length > 0 && <polyline points={line((s) => s.requests)} className="series-requests" />}
        {steps.length > 0 && <polyline points={line((s) => s.conflicts)} className="series-conflicts" />}
      </svg>
      <figcaption>
        <span className="key key-requests">{words.toLowerCase()}</span> <span className="key key-conflicts">conflicts</span> per{" "}
        {REFRESH_MS / 1000} s
      </figcaption>
    </figure>
  );
}

export function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}

/**
 * For whoever runs the server: its HTTP figures (requests, errors and
 * latency by route, retries answered again, sheet sync jobs), live. Not in
 * the main menu: the Team activity page links here.
 */
export function ServerPage() {
  const { figures, error, plotted } = useServerFigures();
  const requests = figures?.routes.reduce((n, r) => n + r.requests, 0) ?? 0;
  const errors = figures?.routes.reduce((n, r) => n + r.errors, 0) ?? 0;
  const jobs = figures?.syncJobs;
  return (
    <section aria-labelledby="server-title">
      <h1 id="server-title">Server health</h1>
      <p className="hint">
        For whoever runs the server: what it answered since it started. <a href="#/team">Back to Team activity</a>
      </p>
      {error && (
        <p role="alert" className="error">
          Figures unavailable: {error}
        </p>
      )}
      {!figures ? (
        <p className="hint">Reading the server's figures…</p>
      ) : (
        <>
          <section className="panel" aria-labelledby="server-now">
            <h2 id="server-now">Since the server started</h2>
            <dl className="facts figures">
              <div>
                <dt>Requests / errors</dt>
                <dd data-testid="figure-requests">
                  {requests} / {errors}
                </dd>
              </div>
              <div>
                <dt>Saves committed</dt>
                <dd data-testid="figure-commits">{figures.commits}</dd>
              </div>
              <div>
                <dt>Conflicts (rate)</dt>
                <dd data-testid="figure-conflicts">
                  {figures.conflicts} ({percent(figures.conflictRate)})
                </dd>
              </div>
              <div>
                <dt>Requests answered again (retries)</dt>
                <dd data-testid="figure-replays">{figures.idempotentReplays}</dd>
              </div>
              <div>
                <dt>Sheet syncs queued / running</dt>
                <dd data-testid="figure-jobs-now">
                  {jobs!.queued} / {jobs!.running}
                </dd>
              </div>
              <div>
                <dt>Sheet syncs complete / failed</dt>
                <dd data-testid="figure-jobs-done">
                  {jobs!.completed} / {jobs!.failed}
                </dd>
              </div>
              <div>
                <dt>Mean sheet sync</dt>
                <dd>{(jobs!.meanDurationMs / 1000).toFixed(1)} s</dd>
              </div>
              <div>
                <dt>Live connections</dt>
                <dd data-testid="figure-streams">{figures.eventStreams}</dd>
              </div>
            </dl>
            {Object.keys(jobs!.queuedPerUser).length > 0 && (
              <p className="hint">
                Waiting:{" "}
                {Object.entries(jobs!.queuedPerUser)
                  .map(([user, n]) => `${user} ${n}`)
                  .join(", ")}
              </p>
            )}
          </section>
          <section className="panel" aria-labelledby="server-plot">
            <h2 id="server-plot">Last minutes</h2>
            <ActivityPlot plotted={plotted} main="requests" words="Requests" />
          </section>
          <section className="panel" aria-labelledby="server-routes">
            <h2 id="server-routes">Requests by route</h2>
            <WideTable
              label="Requests by route"
              region="Routes"
              columns={["Route", "Requests", "Errors", "p50", "p95"]}
            >
              {figures.routes.map((r) => (
                <tr key={`${r.method} ${r.route}`}>
                  <td>
                    <code>
                      {r.method} {r.route}
                    </code>
                  </td>
                  <td>{r.requests}</td>
                  <td>{r.errors}</td>
                  <td>{r.p50Ms.toFixed(1)} ms</td>
                  <td>{r.p95Ms.toFixed(1)} ms</td>
                </tr>
              ))}
            </WideTable>
          </section>
        </>
      )}
    </section>
  );
}
