import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import type { FieldValue, SaveResult } from "crm-sync";
import { useConflicts, useCrm, useRecord, useUndoable } from "crm-sync/react";
import { useKeptNotices } from "../kept";
import { CUSTOMER_STATUSES, fieldLabel, looksLikeEmail, plain, text, when } from "../lib";
import { ActivityTimeline } from "./ActivityTimeline";
import { Dialog } from "./Dialog";
import { EditingHint, PresenceBar } from "./Presence";
import { UseMine } from "./UseMine";

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
  | { kind: "result"; result: SaveResult; fields: string[] }
  | { kind: "undo"; result: SaveResult; redo: boolean }
  | { kind: "error"; text: string };

/** What a field's typed value is wrong about, if anything (not sent then). */
function invalid(field: string, value: string): string | null {
  if (field === "name" && value.trim() === "") return "Name cannot be empty: not saved.";
  if (field === "email" && value !== "" && !looksLikeEmail(value)) {
    return `Email “${value}” is not an address yet: not saved.`;
  }
  return null;
}

/**
 * Edits one customer. Every change calls `crm.save` at once; the module
 * debounces them into one request per pause. Shown values are what the
 * person typed until the save settles, then the record's view. A value the
 * server would refuse (empty name, bad email) is kept in the field and
 * said, never sent and never dropped silently.
 */
export function EditCustomerDialog({ id, onClose }: { id: string; onClose: () => void }) {
  const crm = useCrm();
  const view = useRecord("customers", id);
  const conflicts = useConflicts();
  const { store: kept, notices } = useKeptNotices();
  const [typed, setTyped] = useState<Record<string, string>>({});
  const [problems, setProblems] = useState<Record<string, string>>({});
  const [note, setNote] = useState<Note>({ kind: "idle" });
  const [closeWarned, setCloseWarned] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [comment, setComment] = useState("");
  const [commentError, setCommentError] = useState<string | null>(null);
  const latest = useRef(0);
  const undoable = useUndoable();
  const lastUndone = useRef<string | null>(null);
  const newest = undoable.find((c) => c.collection === "customers" && c.recordId === id);
  const [focused, setFocused] = useState<string | null>(null);

  // Others see who has this customer open, and which field is in focus.
  useEffect(() => {
    crm.presence.enter("customers", id, { editing: focused });
  }, [crm, id, focused]);
  useEffect(() => () => crm.presence.leave("customers", id), [crm, id]);

  function change(field: string, value: string) {
    setTyped((t) => ({ ...t, [field]: value }));
    setCloseWarned(false);
    const call = ++latest.current;
    const problem = invalid(field, value);
    setProblems((p) => {
      const next = { ...p };
      if (problem) next[field] = problem;
      else delete next[field];
      return next;
    });
    if (problem) return;
    const fieldValue: FieldValue = value === "" ? null : value;
    setNote({ kind: "saving" });
    crm.save("customers", id, { [field]: fieldValue }).then(
      (result) => {
        if (result.status === "committed" || result.status === "merged") {
          kept?.remember("customers", id, { [field]: fieldValue }, result.record.version);
        }
        if (call !== latest.current) return;
        setNote({ kind: "result", result, fields: [field] });
        // Nothing newer in flight: show the record itself again, except
        // what is still refused locally.
        setTyped((t) => Object.fromEntries(Object.entries(t).filter(([f]) => invalid(f, t[f]) !== null)));
      },
      (e: unknown) => {
        if (call !== latest.current) return;
        setNote({ kind: "error", text: `Not saved: ${plain(e)}` });
      },
    );
  }

  /**
   * Takes back this person's newest change of the customer (Ctrl+Z, the
   * notice's "Undo"), a change from the history (by its version), or the
   * last undo (redo). What is still being typed is saved first, so the
   * newest change is the one undone.
   */
  async function undo(what: { version?: number; redo?: boolean } = {}) {
    const call = ++latest.current;
    setNote({ kind: "saving" });
    try {
      let result: SaveResult;
      if (what.redo) {
        if (!lastUndone.current) throw new Error("Nothing to redo.");
        result = await crm.redo(lastUndone.current);
        lastUndone.current = null;
      } else if (what.version !== undefined) {
        result = await crm.undo({ collection: "customers", id, version: what.version });
        // Taken back from the history: nothing of the person's list to redo.
        lastUndone.current = null;
      } else {
        await crm.flush();
        const change = crm.undoable().find((c) => c.collection === "customers" && c.recordId === id);
        if (!change) throw new Error("Nothing of yours to undo on this customer.");
        result = await crm.undo(change.mutationId);
        lastUndone.current = change.mutationId;
      }
      setTyped({});
      if (call === latest.current) setNote({ kind: "undo", result, redo: !!what.redo });
    } catch (e) {
      if (call === latest.current) setNote({ kind: "error", text: `Not undone: ${plain(e)}` });
    }
  }

  function undoKey(e: KeyboardEvent<HTMLElement>) {
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
    const key = e.key.toLowerCase();
    if (key === "z" && !e.shiftKey) {
      e.preventDefault();
      void undo();
    } else if ((key === "z" && e.shiftKey) || key === "y") {
      e.preventDefault();
      void undo({ redo: true });
    }
  }

  function close() {
    // A refused value is lost on close: say so once, close on the second try.
    if (Object.keys(problems).length > 0 && !closeWarned) {
      setCloseWarned(true);
      return;
    }
    onClose();
  }

  async function addComment(e?: FormEvent) {
    e?.preventDefault();
    const body = comment.trim();
    if (!body) return;
    setCommentError(null);
    setComment("");
    try {
      await crm.comment("customers", id, body);
    } catch (err) {
      setCommentError(`Comment not sent: ${plain(err)}`);
    }
  }

  function commentKey(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void addComment();
    }
  }

  async function remove() {
    try {
      const result = await crm.remove("customers", id);
      if (result.status === "conflict") {
        setNote({ kind: "result", result, fields: [] });
        setConfirmDelete(false);
        return;
      }
      onClose();
    } catch (e) {
      setNote({ kind: "error", text: `Not deleted: ${plain(e)}` });
      setConfirmDelete(false);
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
  const mine = notices.filter((n) => n.collection === "customers" && n.recordId === id);

  function noteText(): string {
    switch (note.kind) {
      case "idle":
        return "Changes are saved as you type.";
      case "saving":
        return "Saving…";
      case "error":
        return note.text;
      case "undo":
        switch (note.result.status) {
          case "committed":
          case "merged":
            return note.redo
              ? `Change made again (version ${note.result.record.version}).`
              : `Change undone (version ${note.result.record.version}).`;
          case "conflict": {
            const c = note.result.conflict;
            const fields = c.fields.map(fieldLabel).join(", ");
            const by = c.theirs?.updatedBy ? `${c.theirs.updatedBy} changed` : "Someone else changed";
            return conflicts.some((k) => k.id === c.id)
              ? `Not undone: ${by} ${fields} since. Choose what to keep.`
              : `Conflict resolved: now version ${view!.version}.`;
          }
          case "queued":
            return "Offline: the undo is queued and will be sent when you are back online.";
        }
      case "result":
        switch (note.result.status) {
          case "committed": {
            // Someone else's later value replaced this very save: the
            // dialog no longer claims it stands (who kept what is said
            // below). A notice about another save says nothing about this one.
            const version = note.result.record.version;
            const replaced = kept?.replacing("customers", id, note.fields, version) ?? [];
            return replaced.length > 0
              ? `Saved (version ${version}), then replaced by ${replaced[replaced.length - 1].by}'s change.`
              : `Saved (version ${version}).`;
          }
          case "merged":
            return `Saved, merged with another change (version ${note.result.record.version}).`;
          case "conflict": {
            const conflictId = note.result.conflict.id;
            return conflicts.some((c) => c.id === conflictId)
              ? "Someone else changed the same field: choose what to keep."
              : `Conflict resolved: now version ${view!.version}.`;
          }
          case "queued":
            return "Offline: queued, will be sent when you are back online.";
        }
    }
  }

  const problemList = Object.values(problems);
  const noteIsError = note.kind === "error";
  const saved = note.kind === "result" && (note.result.status === "committed" || note.result.status === "merged");
  const undone = note.kind === "undo" && note.result.status !== "conflict" && lastUndone.current !== null;

  return (
    <Dialog title={`Customer ${text(view.fields.name) || id}`} onClose={close} className="edit-dialog sheet">
      <PresenceBar id={id} />
      <form
        className="fields"
        onSubmit={(e) => e.preventDefault()}
        aria-label="Customer fields"
        onKeyDown={undoKey}
        onFocus={(e) => setFocused((e.target as Element).getAttribute("name"))}
        onBlur={() => setFocused(null)}
      >
        {TEXT_FIELDS.map((f) => (
          <label key={f.name}>
            <span className="label-line">
              {f.label}
              <EditingHint id={id} field={f.name} />
            </span>
            <input
              name={f.name}
              aria-label={f.label}
              type={f.type}
              value={value(f.name)}
              required={f.name === "name"}
              aria-invalid={problems[f.name] ? true : undefined}
              onChange={(e) => change(f.name, e.target.value)}
            />
          </label>
        ))}
        <label>
          <span className="label-line">
            Status
            <EditingHint id={id} field="status" />
          </span>
          <select name="status" aria-label="Status" value={value("status")} onChange={(e) => change("status", e.target.value)}>
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
      {problemList.length > 0 && (
        <div className="error-box" role="alert" data-testid="field-problems">
          {problemList.map((p) => (
            <p key={p}>{p}</p>
          ))}
          {closeWarned && <p>Close again to leave without it.</p>}
        </div>
      )}
      {mine.map((n) => (
        <div key={n.key} className="kept-inline" role="status" data-testid="kept-inline">
          <span>{n.text}</span>
          <UseMine notice={n} />
        </div>
      ))}
      <p className={noteIsError ? "note error" : "note"} role="status" data-testid="save-state">
        <span>{noteText()}</span>
        {saved && newest && (
          <button type="button" className="link-button" onClick={() => void undo()} title="Ctrl+Z">
            Undo
          </button>
        )}
        {undone && (
          <button type="button" className="link-button" onClick={() => void undo({ redo: true })} title="Ctrl+Shift+Z">
            Redo
          </button>
        )}
      </p>
      <p className="meta">
        Last changed by {view.updatedBy} at {when(view.updatedAt)}
        {view.pending && <span className="badge pending">pending</span>}
      </p>

      <section aria-labelledby="comments-title" className="comments">
        <h3 id="comments-title">Activity</h3>
        <ActivityTimeline
          collection="customers"
          id={id}
          version={view.version}
          comments={view.comments}
          onUndo={(version) => void undo({ version })}
        />
        <form onSubmit={addComment} className="comment-form">
          <label>
            New comment <span className="hint">(Ctrl+Enter sends)</span>
            <textarea value={comment} onChange={(e) => setComment(e.target.value)} onKeyDown={commentKey} rows={2} />
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

      <div className="danger-zone">
        {confirmDelete ? (
          <div className="actions" role="group" aria-label="Confirm delete">
            <span>Delete {text(view.fields.name) || id} for everyone?</span>
            <button type="button" className="danger" onClick={() => void remove()}>
              Yes, delete
            </button>
            <button type="button" onClick={() => setConfirmDelete(false)}>
              Keep
            </button>
          </div>
        ) : (
          <button type="button" className="danger-outline" onClick={() => setConfirmDelete(true)}>
            Delete customer
          </button>
        )}
      </div>
    </Dialog>
  );
}
