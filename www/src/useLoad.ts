import { useEffect, useState } from "react";
import type { SyncState } from "crm-sync";
import { useCrm } from "crm-sync/react";

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

/** Whether a phase belongs to a running spreadsheet sync. */
export function isSyncRunning(state: SyncState | undefined): boolean {
  if (!state) return false;
  return ["starting", "queued", "downloading", "processing", "saving"].includes(state.phase);
}
