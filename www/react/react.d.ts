// Types of crm-sync/react (see react.js).
import type { ReactNode, ReactElement } from "react";
import type { Conflict, CrmRecord, CrmStatus, CrmSync, FailedMutation, PendingMutation, PresencePerson, QueryOptions, QueryResult, SyncLogEntry, SyncState, UndoableChange } from "./crm_sync.js";

/** Makes one logged-in client available to the hooks below it. */
export declare function CrmProvider(props: { crm: CrmSync; children?: ReactNode }): ReactElement;

/** The client of the nearest `<CrmProvider>`; throws without one. */
export declare function useCrm(): CrmSync;

/** All confirmed records of a collection (`crm.list`): what the server acknowledged. */
export declare function useRecords(collection: string): CrmRecord[];

/**
 * One record as this tab sees it (`crm.view`): the confirmed record with this
 * tab's staged changes laid over it (`pending: true` where any), or
 * `undefined` when it is not loaded. `crm.get` gives the confirmed one.
 */
export declare function useRecord(collection: string, id: string): CrmRecord | undefined;

/**
 * The records of a collection as `view` shows them, filtered, searched,
 * sorted and paged (`crm.query`): `{ items, total }`. The options may be
 * written inline: equal options give the same result object until something
 * changed.
 */
export declare function useQuery(collection: string, query?: QueryOptions): QueryResult;

/** The user's record-sync log, newest first (`crm.syncLog`). */
export declare function useSyncLog(): SyncLogEntry[];

/** Staged and queued mutations of this user, oldest first (`crm.pending`). */
export declare function usePending(): PendingMutation[];

/** Changes the server refused for good, kept until retried, edited or discarded (`crm.failed`); re-rendered on every refusal, retry and discard in any tab. */
export declare function useFailed(): FailedMutation[];

/** Conflicts waiting for a person (`crm.conflicts`). */
export declare function useConflicts(): Conflict[];

/** This user's committed changes that can be taken back, newest first (`crm.undoable`), the same in every tab; `crm.undo(change.mutationId)` takes one back. */
export declare function useUndoable(): UndoableChange[];

/** `{ online, leader, pending, failed, storage, durable, lastSyncAt }` (`crm.status`); `durable` follows `crm.persist()` in every tab. */
export declare function useCrmStatus(): CrmStatus;

/** The spreadsheet sync's state (`crm.sync.state`), re-rendered on every change. */
export declare function useSyncState(): SyncState;

/** The other people on a record (`crm.presence.of`): one entry per person however many tabs they use, never this user; re-rendered when they come, go or move to another field. Only shows; `crm.presence.enter`/`leave` say where this tab is. */
export declare function usePresence(collection: string, id: string): PresencePerson[];
