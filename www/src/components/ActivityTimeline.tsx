import { useEffect, useRef, useState } from "react";
import type { Comment, FieldValue, RecordHistoryEntry } from "crm-sync";
import { useCrm, useCrmStatus } from "crm-sync/react";
import { fieldLabel, fieldValue, plain, when } from "../lib";

type ViewComment = Comment & { pending?: boolean };

type Item =
  | { kind: "change"; at: number; key: string; entry: RecordHistoryEntry }
  | { kind: "comment"; at: number; key: string; comment: ViewComment };

const VERBS = { create: "created it", update: "changed", delete: "deleted it" } as const;

/** What a change did, in words: a booking's new times are a move, its status "cancelled" a cancel. */
function verb(entry: RecordHistoryEntry): string {
  const changed = Object.keys(entry.changes);
  if (entry.op === "update" || entry.op === undefined) {
    if (entry.changes.status?.to === "cancelled") return "cancelled it";
    if (changed.length > 0 && changed.every((f) => f === "start" || f === "end" || f === "resource")) return "moved it";
  }
  return VERBS[entry.op ?? "update"];
}

function shown(field: string, value: FieldValue): string {
  const t = fieldValue(field, value);
  return t === "(empty)" ? t : `“${t}”`;
}

function time(value: string): number {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? Number.MAX_SAFE_INTEGER : ms;
}

/**
 * A record's activity, oldest first: who changed which field from what to
 * what (`crm.history`, read again whenever the record's version moves) with
 * the comments in between. Without the server (offline) the comments stay
 * and the changes say why they are missing.
 */
export function ActivityTimeline({
  collection,
  id,
  version,
  comments,
  onUndo,
}: {
  collection: string;
  id: string;
  version: number;
  comments: ViewComment[];
  /** Offers "Undo this change" on each change of fields. */
  onUndo?: (version: number) => void;
}) {
  const crm = useCrm();
  const status = useCrmStatus();
  const [history, setHistory] = useState<RecordHistoryEntry[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const list = useRef<HTMLOListElement>(null);

  useEffect(() => {
    let live = true;
    crm.history(collection, id, { limit: 100 }).then(
      (entries) => {
        if (!live) return;
        setHistory(entries);
        setProblem(null);
      },
      (e: unknown) => {
        if (live) setProblem(plain(e));
      },
    );
    return () => {
      live = false;
    };
  }, [crm, collection, id, version, status.online]);

  const items: Item[] = [
    ...(history ?? []).map(
      (entry): Item => ({ kind: "change", at: time(entry.at), key: `v${entry.version}`, entry }),
    ),
    // A comment not yet on the server goes last, where it will land.
    ...comments.map(
      (comment): Item => ({
        kind: "comment",
        at: comment.pending ? Number.MAX_SAFE_INTEGER : time(comment.createdAt),
        key: `c${comment.id}`,
        comment,
      }),
    ),
  ].sort((a, b) => a.at - b.at);

  // The newest is at the bottom: keep it in sight.
  useEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [items.length]);

  return (
    <>
      {problem && (
        <p className="hint" role="status" data-testid="history-problem">
          Changes not shown: {problem}
        </p>
      )}
      {items.length === 0 ? (
        <p className="hint">No activity yet.</p>
      ) : (
        <ol className="thread" aria-label="Activity" ref={list} tabIndex={0}>
          {items.map((item) =>
            item.kind === "comment" ? (
              <li key={item.key} className={item.comment.pending ? "comment pending" : "comment"}>
                <div className="comment-head">
                  <strong>{item.comment.author}</strong> <span className="hint">{when(item.comment.createdAt)}</span>
                  {item.comment.pending && (
                    <span className="badge pending">{status.online ? "sending…" : "queued: sent when online"}</span>
                  )}
                </div>
                <p className="comment-text">{item.comment.text}</p>
              </li>
            ) : (
              <li key={item.key} className="change" data-testid="history-entry">
                <div className="comment-head">
                  <strong>{item.entry.by}</strong> {verb(item.entry)} <span className="hint">{when(item.entry.at)}</span>
                  {item.entry.syncId && <span className="badge">sheet sync</span>}
                  {onUndo && (item.entry.op ?? "update") === "update" && Object.keys(item.entry.changes).length > 0 && (
                    <button
                      type="button"
                      className="link-button"
                      disabled={!status.online}
                      title={status.online ? undefined : "Needs a connection to the server"}
                      onClick={() => onUndo(item.entry.version)}
                    >
                      Undo this change
                    </button>
                  )}
                </div>
                {item.entry.op !== "delete" && (
                  <ul className="field-changes">
                    {Object.entries(item.entry.changes).map(([field, c]) => (
                      <li key={field}>
                        <span className="field-name">{fieldLabel(field)}</span>: {shown(field, c.from)} →{" "}
                        <strong>{shown(field, c.to)}</strong>
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            ),
          )}
        </ol>
      )}
    </>
  );
}
