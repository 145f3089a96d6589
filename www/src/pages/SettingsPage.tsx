import { useEffect, useState } from "react";
import type { CrmSyncJobs, SyncHistoryEntry, SyncState } from "crm-sync";
import { useCrm, useCrmStatus, useSyncState } from "crm-sync/react";
import { explain, when } from "../lib";
import { isSyncRunning } from "../useLoad";

type SyncJobKind = SyncHistoryEntry["kind"];

const STAT_LABELS: [string, string][] = [
  ["rows", "Rows"],
  ["inserted", "Inserted"],
  ["updated", "Updated"],
  ["unchanged", "Unchanged"],
  ["conflicts", "Conflicts"],
  ["invalid", "Invalid"],
  ["bytes", "Bytes"],
];

function Stats({ stats }: { stats: SyncState["stats"] | SyncHistoryEntry["stats"] }) {
  if (!stats) return null;
  const values = stats as Record<string, number | undefined>;
  const shown = STAT_LABELS.filter(([key]) => typeof values[key] === "number");
  if (shown.length === 0) return null;
  return (
    <dl className="stats" aria-label="Sync statistics">
      {shown.map(([key, label]) => (
        <div key={key}>
          <dt>{label}</dt>
          <dd data-stat={key}>{values[key]}</dd>
        </div>
      ))}
    </dl>
  );
}

/** The spreadsheet sync: start, progress, cancel, history. */
function SyncPanel({ sync }: { sync: CrmSyncJobs }) {
  const state = useSyncState();
  const [kind, setKind] = useState<SyncJobKind>("from-sheet");
  const [history, setHistory] = useState<SyncHistoryEntry[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [startNote, setStartNote] = useState<string | null>(null);
  const running = isSyncRunning(state);
  const finished = state && ["complete", "error", "cancelled"].includes(state.phase);

  // The history changes when a run ends; read it again then.
  const phase = state?.phase;
  useEffect(() => {
    let live = true;
    sync.history().then(
      (h) => live && setHistory(h),
      (e: unknown) => live && setError(`History unavailable: ${explain(e)}`),
    );
    return () => {
      live = false;
    };
  }, [sync, phase === "complete" || phase === "error" || phase === "cancelled"]);

  async function start() {
    setError(null);
    setStartNote(null);
    try {
      const started = await sync.start(kind);
      if (started.status === "coalesced") setStartNote("A sync was just started: this request joins the next run.");
    } catch (e) {
      setError(`Could not start: ${explain(e)}`);
    }
  }

  async function cancel() {
    setError(null);
    try {
      await sync.cancel();
    } catch (e) {
      setError(`Could not cancel: ${explain(e)}`);
    }
  }

  const progress = Math.round(state?.progress ?? 0);
  return (
    <section aria-labelledby="sync-title" className="panel sync-panel">
      <h2 id="sync-title">Spreadsheet sync</h2>
      <div className="row">
        <fieldset className="kind">
          <legend>Direction</legend>
          <label>
            <input type="radio" name="kind" checked={kind === "from-sheet"} onChange={() => setKind("from-sheet")} />
            From the sheet into the CRM
          </label>
          <label>
            <input type="radio" name="kind" checked={kind === "to-sheet"} onChange={() => setKind("to-sheet")} />
            From the CRM to the sheet
          </label>
        </fieldset>
        <div className="actions">
          <button type="button" className="primary" onClick={start}>
            Start sync
          </button>
          <button type="button" onClick={cancel} disabled={!running}>
            Cancel sync
          </button>
          {finished && (
            <button type="button" onClick={() => sync.dismiss()}>
              Dismiss
            </button>
          )}
        </div>
      </div>
      <div
        className="progress"
        role="progressbar"
        aria-label="Sync progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={progress}
        aria-valuetext={`${progress}% (${state?.phase ?? "idle"})`}
      >
        <div className={`progress-fill phase-${state?.phase ?? "idle"}`} style={{ width: `${progress}%` }} />
      </div>
      <p className="sync-line" data-testid="sync-status">
        <span className="phase" data-testid="sync-phase">
          {state?.phase ?? "idle"}
        </span>{" "}
        <span data-testid="sync-percent">{progress}%</span>
        {state?.message ? <span className="hint"> · {state.message}</span> : null}
      </p>
      {state?.error && (
        <p role="alert" className="error">
          Sync failed: {state.error.code}: {state.error.message}
        </p>
      )}
      {startNote && <p className="hint">{startNote}</p>}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <Stats stats={state?.stats ?? null} />

      <h3>History</h3>
      {history === null ? (
        <p className="hint">Loading…</p>
      ) : history.length === 0 ? (
        <p className="hint">No syncs yet.</p>
      ) : (
        <div className="scroll-x" tabIndex={0} role="region" aria-label="Sync history, scrolls sideways on small screens">
        <table aria-label="Sync history" className="history">
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Direction</th>
              <th scope="col">Result</th>
              <th scope="col">Duration</th>
              <th scope="col">Rows</th>
              <th scope="col">Inserted / updated / conflicts</th>
            </tr>
          </thead>
          <tbody>
            {history.map((h) => (
              <tr key={`${h.syncId ?? ""}-${h.startedAt}`}>
                <td>{when(h.startedAt)}</td>
                <td>{h.kind}</td>
                <td className={`result-${h.status}`}>
                  {h.status}
                  {h.error ? ` (${h.error.code})` : ""}
                </td>
                <td>{(h.durationMs / 1000).toFixed(1)} s</td>
                <td>{h.stats?.rows ?? ""}</td>
                <td>
                  {h.stats ? `${h.stats.inserted ?? 0} / ${h.stats.updated ?? 0} / ${h.stats.conflicts ?? 0}` : ""}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
    </section>
  );
}

/** Settings: the sync panel and what this device knows. */
export function SettingsPage() {
  const crm = useCrm();
  const sync = crm.sync as CrmSyncJobs | undefined;
  const status = useCrmStatus();
  const metrics = crm.metrics();
  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Settings</h1>
      {sync ? (
        <SyncPanel sync={sync} />
      ) : (
        <section className="panel" aria-labelledby="sync-title" data-testid="sync-unavailable">
          <h2 id="sync-title">Spreadsheet sync</h2>
          <p>This build of crm-sync has no <code>crm.sync</code> yet, so the sync panel is off.</p>
        </section>
      )}
      <section className="panel" aria-labelledby="device-title">
        <h2 id="device-title">This device</h2>
        <dl className="facts">
          <div>
            <dt>Signed in as</dt>
            <dd>{crm.user}</dd>
          </div>
          <div>
            <dt>Connection</dt>
            <dd>{status.online ? "online" : "offline"}</dd>
          </div>
          <div>
            <dt>Leader tab</dt>
            <dd>{status.leader ? "this tab" : "another tab"}</dd>
          </div>
          <div>
            <dt>Storage</dt>
            <dd>{status.storage === "indexeddb" ? "IndexedDB (survives reloads)" : "memory only"}</dd>
          </div>
          <div>
            <dt>Saves / conflicts / merged</dt>
            <dd>
              {metrics.commits} / {metrics.conflicts} / {metrics.merged}
            </dd>
          </div>
        </dl>
      </section>
    </section>
  );
}
