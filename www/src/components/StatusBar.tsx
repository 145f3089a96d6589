import { useState } from "react";
import type { CrmSync, PendingMutation } from "crm-sync";
import { useConflicts, useCrm, useCrmStatus, useFailed, usePending } from "crm-sync/react";
import { fieldLabel, plain, text } from "../lib";

const KIND: Record<string, string> = { customers: "customer", calendar_events: "booking" };

/** A change in the words of the people who made it: names, not ids. */
function describe(crm: CrmSync, m: PendingMutation): string {
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
        .map(([k, v]) => `${fieldLabel(k)} to “${text(v) || "(empty)"}”`)
        .join(", ");
      return `${name}: ${changes ? `change ${changes}` : "change"}`;
    }
  }
}

const STATE_WORDS: Record<string, string> = {
  staged: "about to be sent",
  queued: "waiting for the network",
  sending: "sending…",
  failed: "refused",
};

/**
 * The offline banner, the count of queued and failed changes (with retry
 * and discard), and a way back to conflicts put off for later.
 */
export function StatusBar({ onShowConflicts }: { onShowConflicts: () => void }) {
  const crm = useCrm();
  const status = useCrmStatus();
  const pending = usePending();
  const failed = useFailed();
  const conflicts = useConflicts();
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const queued = pending.filter((m) => m.state === "queued" || m.state === "sending");

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
        {queued.length > 0 || failed.length > 0 ? (
          <span data-testid="outbox-count">
            {queued.length} queued · {failed.length} failed
          </span>
        ) : (
          <span className="hint" data-testid="all-saved">
            All changes saved
          </span>
        )}
        {(queued.length > 0 || failed.length > 0) && (
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
      {open && (queued.length > 0 || failed.length > 0) && (
        <section className="outbox" aria-label="Unsent changes">
          {failed.length > 0 && (
            <>
              <h2>Refused by the server</h2>
              <ul>
                {failed.map((m) => (
                  <li key={m.mutationId}>
                    <span>{describe(crm, m)}</span>
                    <span className="error">{m.error ? plain(new Error(m.error.message)) : ""}</span>
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
          {queued.length > 0 && (
            <>
              <h2>Waiting to be sent</h2>
              <ul>
                {queued.map((m, i) => (
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
