import { useRef, useState, type FormEvent } from "react";
import type { FieldValue, SaveResult } from "crm-sync";
import { useCrm, useRecord } from "../hooks";
import { CUSTOMER_STATUSES, explain, looksLikeEmail, text, when } from "../lib";
import { Dialog } from "./Dialog";

const TEXT_FIELDS = [
  { name: "name", label: "Name", type: "text" },
  { name: "email", label: "Email", type: "email" },
  { name: "phone", label: "Phone", type: "tel" },
  { name: "owner", label: "Owner", type: "text" },
  { name: "city", label: "City", type: "text" },
] as const;

type Note =
  | { kind: "idle" }
  | { kind: "saving" }
  | { kind: "result"; result: SaveResult }
  | { kind: "local-invalid"; text: string }
  | { kind: "error"; text: string };

function noteText(note: Note): string {
  switch (note.kind) {
    case "idle":
      return "Changes are saved as you type.";
    case "saving":
      return "Saving…";
    case "local-invalid":
    case "error":
      return note.text;
    case "result":
      switch (note.result.status) {
        case "committed":
          return `Saved (version ${note.result.record.version}).`;
        case "merged":
          return `Saved, merged with another change (version ${note.result.record.version}).`;
        case "conflict":
          return "Someone else changed the same field: choose what to keep.";
        case "queued":
          return "Offline: queued, will be sent when you are back online.";
      }
  }
}

/**
 * Edits one customer. Every change calls `crm.save` at once; the module
 * debounces them into one request per pause. Shown values are what the
 * person typed until the save settles, then the record's view.
 */
export function EditCustomerDialog({ id, onClose }: { id: string; onClose: () => void }) {
  const crm = useCrm();
  const { view } = useRecord("customers", id);
  const [typed, setTyped] = useState<Record<string, string>>({});
  const [note, setNote] = useState<Note>({ kind: "idle" });
  const [comment, setComment] = useState("");
  const [commentError, setCommentError] = useState<string | null>(null);
  const latest = useRef(0);

  function change(field: string, value: string) {
    setTyped((t) => ({ ...t, [field]: value }));
    const call = ++latest.current;
    if (field === "email" && value !== "" && !looksLikeEmail(value)) {
      setNote({ kind: "local-invalid", text: "Email: not an address yet, so not saved." });
      return;
    }
    const fieldValue: FieldValue = value === "" ? null : value;
    setNote({ kind: "saving" });
    crm.save("customers", id, { [field]: fieldValue }).then(
      (result) => {
        if (call !== latest.current) return;
        setNote({ kind: "result", result });
        // Nothing newer in flight: show the record itself again.
        setTyped({});
      },
      (e: unknown) => {
        if (call !== latest.current) return;
        setNote({ kind: "error", text: `Not saved: ${explain(e)}` });
      },
    );
  }

  async function addComment(e: FormEvent) {
    e.preventDefault();
    const body = comment.trim();
    if (!body) return;
    setCommentError(null);
    setComment("");
    try {
      await crm.comment("customers", id, body);
    } catch (err) {
      setCommentError(`Comment not sent: ${explain(err)}`);
    }
  }

  if (!view) {
    return (
      <Dialog title="Customer not found" onClose={onClose}>
        <p>This customer is not loaded (or was deleted).</p>
      </Dialog>
    );
  }

  const value = (field: string) => typed[field] ?? text(view.fields[field]);
  const noteClass = note.kind === "error" || note.kind === "local-invalid" ? "note error" : "note";

  return (
    <Dialog title={`Customer ${text(view.fields.name) || id}`} onClose={onClose} className="edit-dialog">
      <form className="fields" onSubmit={(e) => e.preventDefault()} aria-label="Customer fields">
        {TEXT_FIELDS.map((f) => (
          <label key={f.name}>
            {f.label}
            <input
              name={f.name}
              type={f.type}
              value={value(f.name)}
              onChange={(e) => change(f.name, e.target.value)}
            />
          </label>
        ))}
        <label>
          Status
          <select name="status" value={value("status")} onChange={(e) => change("status", e.target.value)}>
            {!CUSTOMER_STATUSES.includes(value("status") as (typeof CUSTOMER_STATUSES)[number]) && (
              <option value={value("status")}>{value("status") || "(none)"}</option>
            )}
            {CUSTOMER_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
      </form>
      <p className={noteClass} role="status" data-testid="save-state">
        {noteText(note)}
      </p>
      <p className="meta">
        Version {view.version}, last changed by {view.updatedBy} at {when(view.updatedAt)}
        {view.pending && <span className="badge pending">pending</span>}
      </p>

      <section aria-labelledby="comments-title" className="comments">
        <h3 id="comments-title">Comments</h3>
        {view.comments.length === 0 ? (
          <p className="hint">No comments yet.</p>
        ) : (
          <ol className="thread" aria-label="Comment thread">
            {view.comments.map((c) => (
              <li key={c.id} className={c.pending ? "comment pending" : "comment"}>
                <div className="comment-head">
                  <strong>{c.author}</strong> <span className="hint">{when(c.createdAt)}</span>
                  {c.pending && <span className="badge pending">sending…</span>}
                </div>
                <p className="comment-text">{c.text}</p>
              </li>
            ))}
          </ol>
        )}
        <form onSubmit={addComment} className="comment-form">
          <label>
            New comment
            <textarea value={comment} onChange={(e) => setComment(e.target.value)} rows={2} />
          </label>
          <button type="submit" disabled={!comment.trim()}>
            Add comment
          </button>
        </form>
        {commentError && (
          <p role="alert" className="error">
            {commentError}
          </p>
        )}
      </section>
    </Dialog>
  );
}
