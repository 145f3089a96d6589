import { useState } from "react";
import type { CrmSync, FailedMutation, PendingMutation } from "crm-sync";
import { useConflicts, useCrm, useCrmStatus, useFailed, usePending } from "crm-sync/react";
import { fieldLabel, fieldValue, plain, text } from "../lib";

const KIND: Record<string, string> = { customers: "customer", calendar_events: "booking" };

/** A change in the words of the people who made it: names, not ids. */
function describe(crm: CrmSync, m: PendingMutation | FailedMutation): string {
  const kind = KIND[m.collection] ?? "record";
  const record = crm.view(m.collection, m.recordId) ?? crm.get(m.collection, m.recordId);
  const named = text(m.fields?.name ?? m.fields?.title);
  const name = text(record?.fields.name ?? record?.fields.title) || named || `a ${kind}`;
  switch (m.op) {
    case "comment":
      return `Comment on ${name}: “${m.text ?? ""}”`;
    case "delete":
      return `Delete ${kind} ${name}`;
    case "create":
      return `New ${kind} “${named || name}”`;
    default: {
      const changes = Object.entries(m.fields ?? {})
        .map(([k, v]) => `${fieldLabel(k)} to “${fieldValue(k, v)}”`)
        .join(", ");
      return `${name}: ${changes ? `change ${changes}` : "change"}`;
    }
  }
}

/** Why the server refused a change, for the person who made it. */
function refusalWords(m: FailedMutation): string {
  switch (m.code) {
    case "overlap": {
      const others = m.details?.conflicts ?? [];
      const who = [...new Set(others.map((r) => r.updatedBy).filter(Boolean))].join(", ");
      return who ? `The time is already booked by ${who}.` : "The time is already booked.";
    }
    case "invalid": {
      const fields = Object.keys(m.details?.fields ?? m.fields ?? {}).map(fieldLabel);
      return fields.length > 0 ? `Not accepted: check ${fields.join(", ")}.` : "Not accepted as it is.";
    }
    case "forbidden":
      return "You may not make this change.";
    case "not_found":
      return "It is no longer there: someone else removed it.";
    default:
      return plain(new Error(m.message));
  }
}

const STATE_WORDS: Record<string, string> = {
  staged: "about to be sent",
  queued: "waiting for the network",
  sending: "sending…",
  failed: "refused",
};

/** "1 change was refused", "2 changes were refused". */
function count(n: number, one: string, many: string): string {
  return n === 1 ? `1 change ${one}` : `${n} changes ${many}`;
}

/**
 * What is not on the server yet, in plain words ("1 change was refused ·
 * 2 changes not yet sent"); empty when everything is saved.
 */
export function unsavedWords(pending: number, failed: number, conflicts: number): string {
  const parts: string[] = [];
  if (failed > 0) parts.push(count(failed, "was refused", "were refused"));
  if (conflicts > 0) parts.push(count(conflicts, "needs your decision", "need your decision"));
  if (pending > 0) parts.push(count(pending, "not yet sent", "not yet sent"));
  return parts.join(" · ");
}

/**
 * The offline banner; "All changes saved" only when nothing is waiting,
 * refused or in conflict, else how many of each (with retry and discard),
 * and a way back to conflicts put off for later.
 */
export function StatusBar({ onShowConflicts }: { onShowConflicts: () => void }) {
  const crm = useCrm();
  const status = useCrmStatus();
  const pending = usePending();
  const failed = useFailed();
  const conflicts = useConflicts();
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const unsaved = unsavedWords(pending.length, failed.length, conflicts.length);

  async function act(what: () => Promise<unknown>) {
    setError(null);
    try {
      await what();
    } catch (e) {
      setError(plain(e));
    }
  }

  return (
    <div className="status-bar">
      {!status.online && (
        <div className="offline-banner" role="status" data-testid="offline-banner">
          You are offline. Changes are kept on this device and sent when you are back online.
        </div>
      )}
      {status.storage === "memory" && (
        <div className="warning-banner" role="status">
          This browser does not let the app store data: unsent changes are lost on reload.
        </div>
      )}
      {/* Always laid out (at the height of its buttons), so nothing below
          moves when a count or "Resolve conflicts" appears. */}
      <div className="outbox-summary">
        {unsaved ? (
          <span data-testid="outbox-count">
            {unsaved}
          </span>
        ) : (
          <span className="hint" data-testid="all-saved">
            All changes saved
          </span>
        )}
        {(pending.length > 0 || failed.length > 0) && (
          <button type="button" aria-expanded={open} onClick={() => setOpen((o) => !o)}>
            {open ? "Hide changes" : "Review changes"}
          </button>
        )}
        {conflicts.length > 0 && (
          <button type="button" className="warn" onClick={onShowConflicts}>
            Resolve conflicts ({conflicts.length})
          </button>
        )}
      </div>
      {open && (pending.length > 0 || failed.length > 0) && (
        <section className="outbox" aria-label="Unsent changes">
          {failed.length > 0 && (
            <>
              <h2>Refused by the server</h2>
              <ul>
                {failed.map((m) => (
                  <li key={m.mutationId}>
                    <span>{describe(crm, m)}</span>
                    <span className="error">{refusalWords(m)}</span>
                    <button type="button" onClick={() => act(() => crm.retry(m.mutationId))}>
                      Retry
                    </button>
                    <button type="button" onClick={() => act(() => crm.discard(m.mutationId))}>
                      Discard
                    </button>
                  </li>
                ))}
              </ul>
            </>
          )}
          {pending.length > 0 && (
            <>
              <h2>Waiting to be sent</h2>
              <ul>
                {pending.map((m, i) => (
                  <li key={m.mutationId || `${m.recordId}-${i}`}>
                    <span>{describe(crm, m)}</span>
                    <span className="hint">{status.online ? STATE_WORDS[m.state] ?? m.state : "waiting for the network"}</span>
                    {(m.state === "queued" || m.state === "staged") && m.mutationId && (
                      <button type="button" onClick={() => act(() => crm.discard(m.mutationId))}>
                        Discard
                      </button>
                    )}
                  </li>
                ))}
              </ul>
            </>
          )}
          {error && (
            <p role="alert" className="error">
              {error}
            </p>
          )}
        </section>
      )}
    </div>
  );
}
