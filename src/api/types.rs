//! TypeScript declarations of the data that crosses into JavaScript.
//!
//! Written by hand rather than derived: the record model must read as
//! the contract's (docs/backend/protocol.md) JSON (`null` values, a `fields` object, not `Map`s), and
//! `Record` would shadow TypeScript's built-in of that name.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const RECORD_TS: &'static str = r#"
/** A field value: the protocol allows string, number, boolean and null. */
export type FieldValue = string | number | boolean | null;

/** Field name to value; in a change, `null` clears a field. */
export type Fields = { [field: string]: FieldValue };

/** An append-only comment with a client-made id. */
export interface Comment {
  id: string;
  author: string;
  text: string;
  createdAt: string;
  /** In `view`: not yet acknowledged by the server. */
  pending?: true;
}

/** A record as docs/backend/protocol.md defines it. */
export interface CrmRecord {
  id: string;
  version: number;
  updatedAt: string;
  updatedBy: string;
  fields: Fields;
  comments: Comment[];
  /** In `view`: this tab has staged changes or unsent comments. */
  pending?: true;
  /** Read from IndexedDB while offline. */
  stale?: true;
}
"#;

#[wasm_bindgen(typescript_custom_section)]
const CLIENT_TS: &'static str = r#"
/** How a 409 is handled: see docs/guide/conflicts.md. */
export type ConflictPolicy = "merge" | "manual" | "theirs" | "mine" | "latest";

/** Retries of network errors, timeouts, 5xx and 429 (never other 4xx). */
export interface RetryOptions {
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** The sync job follower's timing. */
export interface SyncOptions {
  pollMs?: number;
  timeoutMs?: number;
  cooldownMs?: number;
}

/** A conflict waiting for a person. */
export interface Conflict {
  id: string;
  collection: string;
  recordId: string;
  /** The record as the change was based on it. */
  base: CrmRecord | null;
  /** The fields this user changed. */
  mine: Fields;
  /** The server's record now. */
  theirs: CrmRecord | null;
  /** The fields both sides changed to different values. */
  fields: string[];
}

/** What a save, create, remove or comment settles with. */
export type SaveResult =
  | { status: "committed"; record: CrmRecord }
  | { status: "merged"; record: CrmRecord; merged: string[] }
  | { status: "conflict"; conflict: Conflict }
  | { status: "queued"; mutationId: string };

/** A staged or queued mutation of this user. */
export interface PendingMutation {
  mutationId: string;
  collection: string;
  recordId: string;
  op: "create" | "patch" | "delete" | "comment";
  state: "staged" | "queued" | "sending" | "failed";
  fields?: Fields;
  text?: string;
  attempts: number;
  createdAt: number;
  error?: { code: CrmErrorCode; message: string };
}

/**
 * What the server sent with a refusal (its `error.details`), as it sent
 * them: the bookings in the way of a `409 overlap`, why each field of a
 * `422 invalid` was refused, and whatever else a server adds.
 */
export interface FailureDetails {
  /** `409 overlap`: the bookings that hold the slot. */
  conflicts?: CrmRecord[];
  /** `422 invalid`: why each named field was refused. */
  fields?: { [field: string]: string };
  [key: string]: unknown;
}

/**
 * A change the server refused for good (`failed()`, the `failed` event):
 * kept until a person retries, edits or discards it.
 */
export interface FailedMutation extends Omit<PendingMutation, "fields" | "state"> {
  state: "failed";
  /** The fields it set; `null` for a delete or a comment. */
  fields: Fields | null;
  /** The server's code: `invalid`, `forbidden`, `not_found`, `overlap`, ... */
  code: CrmErrorCode;
  /** The server's message (for a log; say it in the app's own words). */
  message: string;
  /** As the server sent them, or `null`. */
  details: FailureDetails | null;
  /** When it was refused, ms since the epoch. */
  at: number;
}

/** The client's state, for a status bar. */
export interface CrmStatus {
  online: boolean;
  leader: boolean;
  pending: number;
  failed: number;
  storage: "indexeddb" | "memory";
  /** The browser has granted persistent storage (`navigator.storage.persisted()`): it will not clear this user's queued changes on its own. `crm.persist()` asks for it. */
  durable: boolean;
  /** When the last catch-up with the server (or spreadsheet sync) ended. */
  lastSyncAt: string | null;
  /** A load reading every page from the server, and why; `null` when none is under way. */
  fullLoad: { collection: string; reason: FullLoadReason } | null;
}

/** The user's counters, kept in IndexedDB: a reload does not zero them, and the user's tabs add up. */
export interface CrmMetrics {
  operations: number;
  commits: number;
  conflicts: number;
  merged: number;
  retries: number;
  requests: number;
  conflictRate: number;
  retryRate: number;
  outboxReplayed: number;
  /** `change` events received from the server's `/api/events` stream by the user's leading tabs; each starts a read of the changes feed. */
  feedEvents: number;
  /** Mutations the server refused for good. */
  failed: number;
  syncs: { started: number; completed: number; failed: number; meanDurationMs: number };
}

/** What `subscribe` listeners receive. */
export type CrmEvent =
  | { type: "record"; collection: string; id: string; record: CrmRecord | null; origin: "local" | "server" | "tab" }
  | { type: "conflict"; conflict: Conflict }
  | { type: "failed"; failure: FailedMutation }
  | { type: "undoable"; changes: UndoableChange[] }
  | { type: "status"; status: CrmStatus }
  | { type: "session"; state: "expired" | "logged-out" }
  | { type: "load"; collection: string; loaded: number; total?: number }
  | { type: "presence"; collection: string; id: string; people: PresencePerson[] };

/** The user's sync schedule, shared by their tabs. */
export interface SyncSchedule {
  intervalMs: number;
  kind: "from-sheet" | "to-sheet";
  /** When the next run is due (ms since the epoch). */
  nextAt: number;
}

/** One exchange with the server, in `crm.syncLog()`. */
export interface SyncLogEntry {
  /** When it ended (ms since the epoch). */
  at: number;
  direction: "push" | "pull";
  /** A drained outbox, a changes-feed catch-up, or a load of every page. */
  kind: "outbox" | "feed" | "load";
  pushed: number;
  pulled: number;
  merged: number;
  conflicts: number;
  failed: number;
  durationMs: number;
  /** Why it stopped short, if it did. */
  error: string | null;
  /** A `load` line: why the whole collection was read rather than caught up. */
  reason?: FullLoadReason;
}

/**
 * Why `load` read the whole collection from the server instead of answering
 * from IndexedDB and catching up: the first load here, the server's changes
 * feed no longer reaching back to the kept cursor, records stored for
 * another user, or stored by a version that kept them in an older shape.
 */
export type FullLoadReason = "first-load" | "cursor-expired" | "other-user" | "older-schema";

/** What `query` asks for. */
export interface QueryOptions {
  /** Field to the value it must have, or to a list of values it may have. */
  where?: { [field: string]: FieldValue | FieldValue[] };
  /** Text that must appear in some field, in any case. */
  search?: string;
  /** One field (or `id`, `version`, `updatedAt`, `updatedBy`), ascending by default. */
  orderBy?: [field: string, direction?: "asc" | "desc"];
  limit?: number;
  offset?: number;
}

/** One page of a query, and how many records matched in all. */
export interface QueryResult {
  items: CrmRecord[];
  total: number;
}

/** Options of `load`. */
export interface LoadOptions {
  /** Records asked for per page (1000; 1 to 10000). */
  pageSize?: number;
}

/** The phases of a spreadsheet sync run. */
export type SyncPhase =
  | "idle" | "starting" | "queued" | "downloading" | "processing" | "saving"
  | "complete" | "error" | "cancelled";

/** What a sync job counted. */
export interface SyncStats {
  bytes?: number;
  rows?: number;
  inserted?: number;
  updated?: number;
  unchanged?: number;
  conflicts?: number;
  invalid?: number;
}

/** `crm.sync.state`. */
export interface SyncState {
  phase: SyncPhase;
  progress: number;
  message: string;
  syncId: string | null;
  stats: SyncStats | null;
  error: { code: CrmErrorCode; message: string } | null;
  startedAt: number | null;
  updatedAt: number | null;
}

/** What a change did to its record. */
export type HistoryOp = "create" | "update" | "delete";

/** One field's value before and after a change (`null`: not set, or cleared). */
export interface FieldChange {
  from: FieldValue;
  to: FieldValue;
}

/** One committed change of a record, from `crm.history`. */
export interface RecordHistoryEntry {
  /** The version the change made. */
  version: number;
  /** When the server committed it (RFC 3339). */
  at: string;
  /** Who made it; for a sheet sync, the user who ran it. */
  by: string;
  /** Create, update or delete (a backend may leave it out). */
  op?: HistoryOp;
  /** The sheet sync run that applied it, if one did. */
  syncId?: string;
  /** Each changed field, by name. */
  changes: { [field: string]: FieldChange };
}

/** Options of `crm.history`. */
export interface HistoryOptions {
  /** How many entries, newest first (50; at most 1000). */
  limit?: number;
}

/** A sheet row a from-sheet run did not apply: the record changed in the CRM since. */
export interface SyncConflictRow {
  /** The customer's record id. */
  id: string;
  /** Its line in the sheet (1 = header), when the server says. */
  line?: number;
  /** `"changed"` or `"deleted"` in the CRM since the row's version. */
  reason: string;
  /** The record's version in the CRM, when the server says. */
  version?: number;
  /** Who changed it last in the CRM, when the server says. */
  updatedBy?: string;
  /** For people. */
  message: string;
}

/** One finished run, from the user's sync log. */
export interface SyncHistoryEntry {
  syncId: string | null;
  kind: "from-sheet" | "to-sheet";
  status: "complete" | "error" | "cancelled";
  startedAt: number;
  finishedAt: number;
  durationMs: number;
  stats: SyncStats | null;
  error: { code: CrmErrorCode; message: string } | null;
  /** The rows of the sheet a from-sheet run did not apply, and why. */
  conflictRows: SyncConflictRow[];
  /** The server's last words about the run ("Cancelled after 612 of 1,400 rows: 600 new, 12 updated"), if any. */
  message?: string | null;
}

/** One field of a sheet row a from-sheet run did not apply (`crm.sync.conflicts(syncId)`). */
export interface SyncSheetConflict {
  /** The row in the sheet (1 = the header row). */
  row: number;
  /** The customer's record id. */
  recordId: string;
  /** The field whose values differ; `null` when the record was deleted in the CRM. */
  field: string | null;
  /** The sheet's value (`null`: an empty cell). */
  sheet: FieldValue;
  /** The CRM's value (`null`: not set). */
  crm: FieldValue;
  /** Who last changed the field in the CRM (or deleted the record). */
  changedBy: string;
  /** When, RFC 3339 UTC. */
  changedAt: string;
}
"#;
