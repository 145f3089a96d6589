/**
 * The npm package `crm-sync`: what `pkg/crm_sync.d.ts` declares (built by
 * `make pkg`). Start with {@link CrmSync}; call the default export (`init`)
 * once before anything else.
 *
 * @packageDocumentation
 * @module crm-sync
 */
export * from "crm-sync";
export { default } from "crm-sync";
