import { useEffect, useRef, useState } from "react";
import type { CrmEvent } from "crm-sync";
import { useCrm, useSyncState } from "crm-sync/react";
import { useKeptNotices } from "../kept";
import { UseMine } from "./UseMine";
import { fieldLabel, recordName } from "../lib";

/** How long a passing toast stays (one about a lost value stays until read). */
const TOAST_MS = 10_000;

interface Toast {
  key: string;
  kind: "ok" | "bad" | "conflict";
  text: string;
}

/**
 * Non-blocking notices in a corner: a spreadsheet sync that completed or
 * failed, a conflict found, and one of your values replaced by someone
 * else's ("bob kept 'Graz' for City"). Nothing here takes the focus or
 * stops what the person is doing.
 */
export function Toasts() {
  const crm = useCrm();
  const [toasts, setToasts] = useState<Toast[]>([]);
  const { store: kept, notices } = useKeptNotices();
  const sync = useSyncState();
  const seenPhase = useRef<string | null>(null);
  const timers = useRef(new Map<string, number>());

  function add(toast: Toast) {
    setToasts((list) => (list.some((t) => t.key === toast.key) ? list : [...list, toast]));
    const timer = window.setTimeout(() => drop(toast.key), TOAST_MS);
    timers.current.set(toast.key, timer);
  }
  function drop(key: string) {
    window.clearTimeout(timers.current.get(key));
    timers.current.delete(key);
    setToasts((list) => list.filter((t) => t.key !== key));
  }
  useEffect(() => () => timers.current.forEach((t) => window.clearTimeout(t)), []);

  // A run's end, once per run, and only one seen happening (not a state
  // already finished when the page opened).
  useEffect(() => {
    const phase = sync?.phase ?? "idle";
    const before = seenPhase.current;
    seenPhase.current = phase;
    if (before === null || before === phase || !sync) return;
    const run = sync.syncId ?? String(sync.startedAt);
    if (phase === "complete") {
      const s = sync.stats;
      const n = (count: number | undefined, one: string) => `${count ?? 0} ${one}${count === 1 ? "" : "s"}`;
      const figures = s ? `: ${s.inserted ?? 0} inserted, ${s.updated ?? 0} updated, ${n(s.conflicts, "conflict")}` : "";
      add({ key: `sync-${run}`, kind: "ok", text: `Sheet sync complete${figures}.` });
    } else if (phase === "error") {
      add({ key: `sync-${run}`, kind: "bad", text: `Sheet sync failed: ${sync.error?.message ?? "unknown error"}.` });
    }
  }, [sync]);

  // A conflict found by this tab or another tab of the user.
  useEffect(
    () =>
      crm.subscribe((event: CrmEvent) => {
        if (event.type !== "conflict") return;
        const c = event.conflict;
        const name = recordName(c.collection, { ...c.base?.fields, ...c.theirs?.fields, ...c.mine });
        const fields = c.fields.map(fieldLabel).join(", ");
        const who = c.theirs?.updatedBy ? ` by ${c.theirs.updatedBy}` : "";
        add({
          key: `conflict-${c.id}`,
          kind: "conflict",
          text: `Conflict on ${name}: ${fields} changed${who} too.`,
        });
      }),
    [crm],
  );

  if (toasts.length === 0 && notices.length === 0) return null;
  return (
    <div className="toasts" role="status" aria-live="polite" data-testid="toasts">
      {notices.map((n) => (
        <div key={n.key} className="toast kept-notice" data-testid="kept-notice">
          <span>
            <strong>{n.recordName}:</strong> {n.text}
          </span>
          <span className="actions">
            <UseMine notice={n} />
            <button type="button" onClick={() => kept?.dismiss(n.key)}>
              OK
            </button>
          </span>
        </div>
      ))}
      {toasts.map((t) => (
        <div key={t.key} className={`toast toast-${t.kind}`} data-testid={`toast-${t.kind}`}>
          <span>{t.text}</span>
          <button type="button" aria-label="Close notice" onClick={() => drop(t.key)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
