import { useState } from "react";
import type { PendingMutation } from "crm-sync";
import { useConflicts, useCrm, useCrmStatus, useFailed, usePending } from "../hooks";
import { explain, text } from "../lib";

function describe(m: PendingMutation): string {
  const what =
    m.op === "comment"
      ? `comment “${m.text ?? ""}”`
      : m.op === "delete"
        ? "delete"
        : Object.entries(m.fields ?? {})
            .map(([k, v]) => `${k} = ${text(v) || "(empty)"}`)
            .join(", ");
  return `${m.collection}/${m.recordId}: ${m.op} ${what}`;
}

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
      setError(explain(e));
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
      <div className="outbox-summary">
        <span data-testid="outbox-count">
          {queued.length} queued · {failed.length} failed
        </span>
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
                    <span>{describe(m)}</span>
                    <span className="error">{m.error ? `${m.error.code}: ${m.error.message}` : ""}</span>
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
                    <span>{describe(m)}</span>
                    <span className="hint">{m.state}</span>
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
