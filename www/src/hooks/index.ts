// React hooks over crm-sync, each a thin useSyncExternalStore over
// `crm.subscribe` (or `crm.sync.subscribe`): the client returns the same
// snapshot object until it changes, so these re-render only when there is
// something new. Copy this folder into an app as it is.
export { CrmProvider, useCrm } from "./CrmProvider";
export {
  useRecords,
  useRecord,
  usePending,
  useFailed,
  useConflicts,
  useCrmStatus,
  useLoad,
} from "./hooks";
export { useSyncState, useSyncJobs, syncOf, isSyncRunning, type SyncJobs, type SyncJobKind } from "./sync";
