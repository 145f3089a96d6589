import { useEffect, useState } from "react";
import type { CrmSyncJobs, SyncHistoryEntry, SyncLogEntry, SyncSchedule, SyncSheetConflict, SyncState } from "crm-sync";
import { CrmError } from "crm-sync";
import { useCrm, useCrmStatus, useSyncLog, useSyncState } from "crm-sync/react";
import { explain, fieldLabel, plain, SYNC_PHASE_WORDS, syncFailure, text, when } from "../lib";
import { isSyncRunning } from "../useLoad";
import { KeptChanges } from "../components/KeptChanges";
import { WideTable } from "../components/WideTable";

type SyncJobKind = SyncHistoryEntry["kind"];

const STAT_LABELS: [string, string][] = [
  ["rows", "Rows in the sheet"],
  ["inserted", "New customers"],
  ["updated", "Updated"],
  ["unchanged", "Unchanged"],
  ["conflicts", "Conflicts"],
  ["invalid", "Unreadable rows"],
];

/** A direction of the sync in words. */
function direction(kind: SyncJobKind): string {
  return kind === "to-sheet" ? "To the sheet" : "From the sheet";
}

/** What a "take the sheet's value" save came to, in words. */
type Taken = { state: "saving" } | { state: "done"; said: string } | { state: "failed"; said: string };

/**
 * The rows a from-sheet run left alone because the customer changed in the
 * CRM since the last sync, field by field, each with "Take the sheet's
 * value": a normal, versioned save of that one field.
 */
function SheetConflicts({ sync, syncId, onClose }: { sync: CrmSyncJobs; syncId: string; onClose: () => void }) {
  const crm = useCrm();
  const [items, setItems] = useState<SyncSheetConflict[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [taken, setTaken] = useState<Record<string, Taken>>({});
  useEffect(() => {
    let live = true;
    setItems(null);
    setError(null);
    sync.conflicts(syncId).then(
      (list) => live && setItems(list),
      (e: unknown) => {
        if (!live) return;
        const gone = e instanceof CrmError && e.code === "sync_not_found";
        setError(gone ? "This run is too old: the server no longer keeps its conflicts." : `The conflicts could not be read: ${plain(e)}`);
      },
    );
    return () => {
      live = false;
    };
  }, [sync, syncId]);

  async function take(item: SyncSheetConflict, key: string) {
    if (item.field === null) return;
    setTaken((t) => ({ ...t, [key]: { state: "saving" } }));
    let next: Taken;
    try {
      const result = await crm.save("customers", item.recordId, { [item.field]: item.sheet });
      next =
        result.status === "conflict"
          ? { state: "failed", said: "Someone changed it meanwhile: decide in the conflict dialog." }
          : result.status === "queued"
            ? { state: "done", said: "Kept on this device; saved when back online." }
            : { state: "done", said: "Saved." };
    } catch (e) {
      next = { state: "failed", said: `Not saved: ${plain(e)}` };
    }
    setTaken((t) => ({ ...t, [key]: next }));
  }

  const customer = (id: string) => text(crm.get("customers", id)?.fields.name) || "A customer not loaded here";
  return (
    <section aria-labelledby="sheet-conflicts-title" className="sheet-conflicts" data-testid="sheet-conflicts">
      <h3 id="sheet-conflicts-title">Rows the sync left alone</h3>
      <p className="hint">
        These customers changed in the CRM since the last sync, so the sheet's values were not written over them.
      </p>
      {error ? (
        <p role="alert" className="error">
          {error}
        </p>
      ) : items === null ? (
        <p className="hint">Loading…</p>
      ) : items.length === 0 ? (
        <p className="hint">Nothing was left alone.</p>
      ) : (
        <WideTable
          label="Conflicts of the sync"
          columns={["Sheet row", "Customer", "Field", "In the sheet", "In the CRM", "Changed by", "When", <span className="visually-hidden">Action</span>]}
        >
          {items.map((item) => {
            const key = `${item.row}-${item.field ?? ""}`;
            const done = taken[key];
            return (
              <tr key={key} data-record={item.recordId} data-field={item.field ?? ""}>
                <td>{item.row}</td>
                <td>{customer(item.recordId)}</td>
                {item.field === null ? (
                  <td colSpan={3}>Deleted in the CRM</td>
                ) : (
                  <>
                    <td>{fieldLabel(item.field)}</td>
                    <td data-value="sheet">{text(item.sheet) || "(empty)"}</td>
                    <td data-value="crm">{text(item.crm) || "(empty)"}</td>
                  </>
                )}
                <td>{item.changedBy}</td>
                <td>
                  <time dateTime={item.changedAt}>{when(item.changedAt)}</time>
                </td>
                <td>
                  {item.field === null ? null : done?.state === "done" || done?.state === "failed" ? (
                    <span role="status" className={done.state === "failed" ? "error" : "hint"}>
                      {done.said}
                    </span>
                  ) : (
                    <button type="button" disabled={done?.state === "saving"} onClick={() => take(item, key)}>
                      Take the sheet's value
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </WideTable>
      )}
      <button type="button" onClick={onClose}>
        Close the list
      </button>
    </section>
  );
}

/** One exchange of the record-sync log, in words. */
function exchange(l: SyncLogEntry): string {
  if (l.kind === "outbox") return "Sent your changes";
  if (l.kind === "feed") return "Received others' changes";
  return "Loaded the list";
}

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
  const [conflictsOf, setConflictsOf] = useState<string | null>(null);
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
        aria-valuetext={`${progress}% (${SYNC_PHASE_WORDS[state?.phase ?? "idle"]})`}
      >
        <div className={`progress-fill phase-${state?.phase ?? "idle"}`} style={{ width: `${progress}%` }} />
      </div>
      <p className="sync-line" data-testid="sync-status">
        <span className="phase" data-testid="sync-phase" data-phase={state?.phase ?? "idle"}>
          {SYNC_PHASE_WORDS[state?.phase ?? "idle"]}
        </span>{" "}
        <span data-testid="sync-percent">{progress}%</span>
        {state?.message ? <span className="hint"> · {state.message}</span> : null}
      </p>
      {state?.error && (
        <p role="alert" className="error">
          The sync stopped: {syncFailure(state.error)}
        </p>
      )}
      {startNote && <p className="hint">{startNote}</p>}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <Stats stats={state?.stats ?? null} />
      {finished && state?.syncId && (state.stats?.conflicts ?? 0) > 0 && conflictsOf !== state.syncId && (
        <button type="button" onClick={() => setConflictsOf(state.syncId)}>
          {state.stats?.conflicts === 1 ? "Show the conflict" : `Show the ${state.stats?.conflicts} conflicts`}
        </button>
      )}
      {conflictsOf && <SheetConflicts sync={sync} syncId={conflictsOf} onClose={() => setConflictsOf(null)} />}

      <h3>History</h3>
      {history === null ? (
        <p className="hint">Loading…</p>
      ) : history.length === 0 ? (
        <p className="hint">No syncs yet.</p>
      ) : (
        <WideTable
          label="Sync history"
          columns={["Started", "Direction", "Result", "Duration", "Rows", "New / updated / conflicts", "What happened"]}
        >
          {history.map((h) => (
            <tr key={`${h.syncId ?? ""}-${h.startedAt}`}>
              <td>{when(h.startedAt)}</td>
              <td>{direction(h.kind)}</td>
              <td className={`result-${h.status}`} data-status={h.status}>
                {SYNC_PHASE_WORDS[h.status] ?? h.status}
              </td>
              <td>{(h.durationMs / 1000).toFixed(1)} s</td>
              <td>{h.stats?.rows ?? ""}</td>
              <td>
                {h.stats ? `${h.stats.inserted ?? 0} / ${h.stats.updated ?? 0} / ${h.stats.conflicts ?? 0}` : ""}
              </td>
              <td>
                {h.status === "error" && h.error ? syncFailure(h.error) : (h.message ?? "")}
                {h.syncId && (h.stats?.conflicts ?? 0) > 0 && conflictsOf !== h.syncId && (
                  <>
                    {" "}
                    <button type="button" className="link" onClick={() => setConflictsOf(h.syncId)}>
                      Show conflicts
                    </button>
                  </>
                )}
              </td>
            </tr>
          ))}
        </WideTable>
      )}
    </section>
  );
}

/** "09:05:30" on the day, with the date when it is another day. */
function moment(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return d.toDateString() === new Date().toDateString() ? time : `${when(ms)}:${pad(d.getSeconds())}`;
}

/** The shared schedule, as every tab of the user has it (read each second). */
function useSchedule(sync: CrmSyncJobs): SyncSchedule | null {
  const [schedule, setSchedule] = useState<SyncSchedule | null>(() => sync.scheduled);
  useEffect(() => {
    const timer = window.setInterval(() => {
      const next = sync.scheduled;
      setSchedule((now) =>
        now?.nextAt === next?.nextAt && now?.intervalMs === next?.intervalMs && now?.kind === next?.kind ? now : next,
      );
    }, 1000);
    return () => window.clearInterval(timer);
  }, [sync]);
  return schedule;
}

/** Set or stop the automatic sync; shows when it next runs. */
function SchedulePanel({ sync }: { sync: CrmSyncJobs }) {
  const schedule = useSchedule(sync);
  const [minutes, setMinutes] = useState("120");
  const [kind, setKind] = useState<SyncJobKind>("from-sheet");
  const [error, setError] = useState<string | null>(null);

  async function set(intervalMs: number | null) {
    setError(null);
    try {
      await sync.schedule(intervalMs, kind);
    } catch (e) {
      setError(`Could not change the schedule: ${explain(e)}`);
    }
  }
  const asked = Number(minutes);
  const valid = Number.isFinite(asked) && asked * 60_000 >= 1000;
  return (
    <section aria-labelledby="schedule-title" className="panel">
      <h2 id="schedule-title">Automatic sync</h2>
      <p data-testid="schedule-status">
        {schedule ? (
          <>
            Every {schedule.intervalMs >= 60_000 ? `${+(schedule.intervalMs / 60_000).toFixed(2)} min` : `${schedule.intervalMs / 1000} s`}{" "}
            ({direction(schedule.kind).toLowerCase()}); next run at <time data-testid="schedule-next">{moment(schedule.nextAt)}</time>
          </>
        ) : (
          "Off"
        )}
      </p>
      <div className="row">
        <label>
          Every (minutes){" "}
          <input
            type="number"
            min="0.02"
            step="any"
            value={minutes}
            onChange={(e) => setMinutes(e.target.value)}
            aria-invalid={!valid}
          />
        </label>
        <label>
          Direction{" "}
          <select value={kind} onChange={(e) => setKind(e.target.value as SyncJobKind)}>
            <option value="from-sheet">From the sheet</option>
            <option value="to-sheet">To the sheet</option>
          </select>
        </label>
        <div className="actions">
          <button type="button" className="primary" disabled={!valid} onClick={() => set(Math.round(asked * 60_000))}>
            Set schedule
          </button>
          <button type="button" disabled={!schedule} onClick={() => set(null)}>
            Stop schedule
          </button>
        </div>
      </div>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </section>
  );
}

/** The record-sync log: each exchange with the server, newest first. */
function SyncLogPanel() {
  const log = useSyncLog();
  const shown = log.slice(0, 50);
  return (
    <section aria-labelledby="synclog-title" className="panel">
      <h2 id="synclog-title">Record sync log</h2>
      {shown.length === 0 ? (
        <p className="hint">Nothing exchanged yet.</p>
      ) : (
        <WideTable
          label="Record sync log"
          columns={["At", "What", "Sent", "Received", "Merged", "Conflicts", "Failed", "Took", "Error"]}
        >
          {shown.map((l, i) => (
            <tr key={`${l.at}-${i}`} data-direction={l.direction} data-kind={l.kind}>
              <td>{moment(l.at)}</td>
              <td>
                {exchange(l)}
              </td>
              <td>{l.pushed}</td>
              <td>{l.pulled}</td>
              <td>{l.merged}</td>
              <td>{l.conflicts}</td>
              <td>{l.failed}</td>
              <td>{Math.round(l.durationMs)} ms</td>
              <td className={l.error ? "result-error" : undefined}>{l.error ?? ""}</td>
            </tr>
          ))}
        </WideTable>
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
        <>
          <SyncPanel sync={sync} />
          <SchedulePanel sync={sync} />
        </>
      ) : (
        <section className="panel" aria-labelledby="sync-title" data-testid="sync-unavailable">
          <h2 id="sync-title">Spreadsheet sync</h2>
          <p>This build of crm-sync has no <code>crm.sync</code> yet, so the sync panel is off.</p>
        </section>
      )}
      <SyncLogPanel />
      <KeptChanges />
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
            <dt>Talking to the server</dt>
            <dd>{status.leader ? "this tab" : "another tab of yours"}</dd>
          </div>
          <div>
            <dt>Storage</dt>
            <dd>{status.storage === "indexeddb" ? "on this device (kept over reloads)" : "only while this page is open"}</dd>
          </div>
          <div>
            <dt>Saves / conflicts / merged (all sessions)</dt>
            <dd>
              {metrics.commits} / {metrics.conflicts} / {metrics.merged}
            </dd>
          </div>
        </dl>
      </section>
    </section>
  );
}
