import { useCallback, useMemo, useRef, useSyncExternalStore } from "react";
import type { CrmSync, SyncHistoryEntry, SyncState } from "crm-sync";
import { useCrm } from "./CrmProvider";

/** Which way a sync job copies records. */
export type SyncJobKind = SyncHistoryEntry["kind"];

/**
 * `crm.sync` as docs/guide/sync-jobs.md describes it. Declared here so the
 * app compiles against a package built before `crm.sync` existed; once the
 * package has it, `syncOf` simply finds it.
 */
export interface SyncJobs {
  start(kind?: SyncJobKind): Promise<{ syncId: string; status: "queued" | "coalesced" }>;
  readonly state: SyncState;
  subscribe(listener: (state: SyncState) => void): () => void;
  cancel(): Promise<unknown>;
  dismiss(): void;
  history(): Promise<SyncHistoryEntry[]>;
  schedule(intervalMs: number | null): void;
}

/** `crm.sync`, or `undefined` when this build of the package has none. */
export function syncOf(crm: CrmSync): SyncJobs | undefined {
  const sync = (crm as unknown as { sync?: unknown }).sync;
  if (sync && typeof sync === "object" && "start" in sync && "subscribe" in sync) {
    return sync as SyncJobs;
  }
  return undefined;
}

/** The client's `crm.sync`, or `undefined` (runtime check, see `syncOf`). */
export function useSyncJobs(): SyncJobs | undefined {
  const crm = useCrm();
  return useMemo(() => syncOf(crm), [crm]);
}

const noSubscription = () => () => {};

/**
 * `crm.sync.state`, re-rendering on every change; `undefined` when the
 * package has no `crm.sync`.
 */
export function useSyncState(): SyncState | undefined {
  const sync = useSyncJobs();
  const last = useRef<{ json: string; state: SyncState } | undefined>(undefined);
  const subscribe = useCallback(
    (listener: () => void) => (sync ? sync.subscribe(() => listener()) : noSubscription()),
    [sync],
  );
  // The module hands out the same object until the state changes; the
  // comparison only guards against a getter that builds a fresh one.
  const snapshot = useCallback(() => {
    if (!sync) return undefined;
    const state = sync.state;
    if (last.current?.state === state) return state;
    const json = JSON.stringify(state);
    if (last.current?.json === json) return last.current.state;
    last.current = { json, state };
    return state;
  }, [sync]);
  return useSyncExternalStore(subscribe, snapshot);
}

/** Whether a phase belongs to a running job. */
export function isSyncRunning(state: SyncState | undefined): boolean {
  if (!state) return false;
  return ["starting", "queued", "downloading", "processing", "saving"].includes(state.phase);
}
