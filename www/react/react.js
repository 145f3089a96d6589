// crm-sync/react: React hooks over a logged-in CrmSync client. Each hook is a
// thin useSyncExternalStore over `crm.subscribe` (or `crm.sync.subscribe`):
// the client hands out the same snapshot object until something changed, so
// components re-render only when there is something new.
//
// Plain JavaScript with a hand-written react.d.ts beside it, so that `make
// pkg` only copies files (no TypeScript compiler before the demo's npm
// install). The demo's `tsc --noEmit` checks the types against their use.
import { createContext, createElement, useCallback, useContext, useRef, useSyncExternalStore } from "react";

const CrmContext = createContext(null);

export function CrmProvider({ crm, children }) {
  if (!crm || typeof crm.subscribe !== "function") {
    throw new TypeError("CrmProvider: the `crm` prop must be a CrmSync client (from CrmSync.login or CrmSync.open)");
  }
  return createElement(CrmContext.Provider, { value: crm }, children);
}

export function useCrm() {
  const crm = useContext(CrmContext);
  if (!crm) throw new Error("crm-sync/react: no <CrmProvider crm={...}> above this component");
  return crm;
}

// The subscribe function keeps its identity while the client does, so React
// does not resubscribe on every render.
function useClientStore(read) {
  const crm = useCrm();
  const subscribe = useCallback((listener) => crm.subscribe(() => listener()), [crm]);
  return useSyncExternalStore(subscribe, () => read(crm));
}

function checkName(hook, value) {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${hook}: the collection and id must be non-empty strings, got ${JSON.stringify(value)}`);
  }
}

export function useRecords(collection) {
  checkName("useRecords", collection);
  return useClientStore((crm) => crm.list(collection));
}

export function useRecord(collection, id) {
  checkName("useRecord", collection);
  checkName("useRecord", id);
  return useClientStore((crm) => crm.view(collection, id));
}

// `crm.query` hands out the same object for the same options (compared as
// JSON) until something changed, so a query written inline in a component
// does not re-render it on every render.
export function useQuery(collection, query) {
  checkName("useQuery", collection);
  return useClientStore((crm) => crm.query(collection, query));
}

export function useSyncLog() {
  return useClientStore((crm) => crm.syncLog());
}

export function usePending() {
  return useClientStore((crm) => crm.pending());
}

export function useFailed() {
  return useClientStore((crm) => crm.failed());
}

export function useConflicts() {
  return useClientStore((crm) => crm.conflicts());
}

export function useUndoable() {
  return useClientStore((crm) => crm.undoable());
}

export function useCrmStatus() {
  return useClientStore((crm) => crm.status);
}

const noSubscription = () => () => {};

export function useSyncState() {
  const crm = useCrm();
  const sync = crm.sync;
  const last = useRef(undefined);
  const subscribe = useCallback(
    (listener) => (sync ? sync.subscribe(() => listener()) : noSubscription()),
    [sync],
  );
  // The module hands out the same object until the state changes; comparing
  // the JSON only guards against a getter that builds a fresh one.
  const snapshot = useCallback(() => {
    if (!sync) return undefined;
    const state = sync.state;
    if (last.current && last.current.state === state) return state;
    const json = JSON.stringify(state);
    if (last.current && last.current.json === json) return last.current.state;
    last.current = { json, state };
    return state;
  }, [sync]);
  return useSyncExternalStore(subscribe, snapshot);
}

// The other people on a record (`crm.presence.of`): the module hands out the
// same array until they change, and raises a `presence` event when they do.
// It only shows who is there; say where this tab is with
// `crm.presence.enter` / `leave`.
export function usePresence(collection, id) {
  checkName("usePresence", collection);
  checkName("usePresence", id);
  return useClientStore((crm) => crm.presence.of(collection, id));
}
