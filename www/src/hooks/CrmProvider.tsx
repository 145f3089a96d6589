import { createContext, useContext, type ReactNode } from "react";
import type { CrmSync } from "crm-sync";

const CrmContext = createContext<CrmSync | null>(null);

/** Makes one logged-in client available to the hooks below it. */
export function CrmProvider({ client, children }: { client: CrmSync; children: ReactNode }) {
  return <CrmContext.Provider value={client}>{children}</CrmContext.Provider>;
}

/** The client of the nearest CrmProvider. */
export function useCrm(): CrmSync {
  const crm = useContext(CrmContext);
  if (!crm) throw new Error("useCrm: no <CrmProvider> above this component");
  return crm;
}
