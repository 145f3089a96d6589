import { useCallback, useEffect, useState, useSyncExternalStore } from "react";
import type { Conflict, CrmRecord, CrmStatus, CrmSync, PendingMutation } from "crm-sync";
import { useCrm } from "./CrmProvider";

/** A subscribe function that keeps its identity while the client does. */
function useSubscribe(crm: CrmSync): (listener: () => void) => () => void {
  return useCallback((listener: () => void) => crm.subscribe(() => listener()), [crm]);
}

/** All confirmed records of a collection (what the server acknowledged). */
export function useRecords(collection: string): CrmRecord[] {
  const crm = useCrm();
  const snapshot = useCallback(() => crm.list(collection), [crm, collection]);
  return useSyncExternalStore(useSubscribe(crm), snapshot);
}

/**
 * One record: `confirmed` is the server's, `view` has this tab's staged
 * changes laid over it (with `pending: true`).
 */
export function useRecord(
  collection: string,
  id: string,
): { confirmed: CrmRecord | undefined; view: CrmRecord | undefined } {
  const crm = useCrm();
  const subscribe = useSubscribe(crm);
  const confirmed = useSyncExternalStore(
    subscribe,
    useCallback(() => crm.get(collection, id), [crm, collection, id]),
  );
  const view = useSyncExternalStore(
    subscribe,
    useCallback(() => crm.view(collection, id), [crm, collection, id]),
  );
  return { confirmed, view };
}

/** Staged and queued mutations of this user, oldest first. */
export function usePending(): PendingMutation[] {
  const crm = useCrm();
  return useSyncExternalStore(useSubscribe(crm), useCallback(() => crm.pending(), [crm]));
}

/** Mutations the server refused for good, kept for retry or discard. */
export function useFailed(): PendingMutation[] {
  const crm = useCrm();
  return useSyncExternalStore(useSubscribe(crm), useCallback(() => crm.failed(), [crm]));
}

/** Conflicts waiting for a person. */
export function useConflicts(): Conflict[] {
  const crm = useCrm();
  return useSyncExternalStore(useSubscribe(crm), useCallback(() => crm.conflicts(), [crm]));
}

/** `{ online, leader, pending, failed, storage, lastSyncAt }`. */
export function useCrmStatus(): CrmStatus {
  const crm = useCrm();
  return useSyncExternalStore(useSubscribe(crm), useCallback(() => crm.status, [crm]));
}

/**
 * Loads a collection into the client once per mount (`crm.load`), and says
 * how it went. Offline the client answers from IndexedDB.
 */
export function useLoad(collection: string): { loading: boolean; error: unknown } {
  const crm = useCrm();
  const [state, setState] = useState<{ loading: boolean; error: unknown }>({ loading: true, error: null });
  useEffect(() => {
    let live = true;
    setState({ loading: true, error: null });
    crm.load(collection).then(
      () => live && setState({ loading: false, error: null }),
      (error: unknown) => live && setState({ loading: false, error }),
    );
    return () => {
      live = false;
    };
  }, [crm, collection]);
  return state;
}
