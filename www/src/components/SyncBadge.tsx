import { useSyncState } from "crm-sync/react";
import { SYNC_PHASE_WORDS } from "../lib";
import { isSyncRunning } from "../useLoad";

/** Shown in the header on every page while a spreadsheet sync runs. */
export function SyncBadge({ onOpen }: { onOpen: () => void }) {
  const state = useSyncState();
  if (!state || !isSyncRunning(state)) return null;
  return (
    <button type="button" className="sync-badge" data-testid="sync-badge" onClick={onOpen}>
      <span className="spinner" aria-hidden="true" />
      Syncing {Math.round(state.progress)}% <span className="visually-hidden">({SYNC_PHASE_WORDS[state.phase]}), open Settings</span>
    </button>
  );
}
