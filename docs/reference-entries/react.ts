/**
 * The React hooks in `www/src/hooks/` of the repository. They are not shipped
 * inside the npm package yet: copy that folder into your app (it imports
 * `react` and `crm-sync`). Each hook is a thin `useSyncExternalStore` over
 * `crm.subscribe` or `crm.sync.subscribe`.
 *
 * @packageDocumentation
 * @module react-hooks
 */
export * from "../../www/src/hooks/index";
