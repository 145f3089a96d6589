/**
 * `crm-sync/react`: the React hooks shipped in the package (React is an
 * optional peer dependency). Each hook is a thin `useSyncExternalStore` over
 * `crm.subscribe` or `crm.sync.subscribe`.
 *
 * @packageDocumentation
 * @module react-hooks
 */
export * from "../../www/react/react";
