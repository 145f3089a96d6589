import { useDeferredValue, useMemo, useState } from "react";
import type { CrmRecord } from "crm-sync";
import { EditCustomerDialog } from "../components/EditCustomerDialog";
import { useCrm, useLoad, usePending, useRecords } from "../hooks";
import { CUSTOMER_STATUSES, explain, text } from "../lib";

const SEARCHED = ["name", "email", "phone", "city", "owner"];

function matches(record: CrmRecord, query: string, status: string): boolean {
  if (status && record.fields.status !== status) return false;
  if (!query) return true;
  return SEARCHED.some((f) => text(record.fields[f]).toLowerCase().includes(query));
}

/** The customers table: search, status filter, pending markers, edit dialog. */
export function CustomersPage() {
  const crm = useCrm();
  const { loading, error } = useLoad("customers");
  const records = useRecords("customers");
  const pending = usePending();
  const [query, setQuery] = useState("");
  const [status, setStatus] = useState("");
  const [editing, setEditing] = useState<string | null>(null);
  const deferredQuery = useDeferredValue(query.trim().toLowerCase());

  const pendingIds = useMemo(
    () => new Set(pending.filter((m) => m.collection === "customers").map((m) => m.recordId)),
    [pending],
  );
  const shown = useMemo(
    () => records.filter((r) => matches(r, deferredQuery, status)),
    [records, deferredQuery, status],
  );
  const stale = records.some((r) => r.stale);

  return (
    <section aria-labelledby="customers-title">
      <div className="page-head">
        <h1 id="customers-title">Customers</h1>
        <div className="filters" role="search">
          <label>
            Search
            <input type="search" value={query} onChange={(e) => setQuery(e.target.value)} placeholder="name, email, city…" />
          </label>
          <label>
            Status filter
            <select value={status} onChange={(e) => setStatus(e.target.value)}>
              <option value="">all</option>
              {CUSTOMER_STATUSES.map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
        </div>
      </div>
      {loading && records.length === 0 && <p role="status">Loading customers…</p>}
      {error != null && (
        <p role="alert" className="error">
          Could not load customers: {explain(error)}
        </p>
      )}
      {stale && <p className="hint">Showing the copy stored on this device (offline).</p>}
      <p className="hint" aria-live="polite">
        {shown.length} of {records.length} customers
      </p>
      <div className="table-scroll">
      <table aria-label="Customers" className="customers">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Status</th>
            <th scope="col">Email</th>
            <th scope="col">City</th>
            <th scope="col">Owner</th>
            <th scope="col">Version</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((confirmed) => {
            const isPending = pendingIds.has(confirmed.id);
            // Rows with staged changes show them (the view), marked pending.
            const r = isPending ? (crm.view("customers", confirmed.id) ?? confirmed) : confirmed;
            return (
              <tr key={r.id} data-id={r.id} className={isPending ? "pending" : undefined}>
                <td>
                  <button type="button" className="link" onClick={() => setEditing(r.id)}>
                    {text(r.fields.name) || r.id}
                  </button>
                  {isPending && (
                    <span className="badge pending" title="Changes not yet confirmed by the server">
                      pending
                    </span>
                  )}
                </td>
                <td>
                  <span className={`status status-${text(r.fields.status)}`}>{text(r.fields.status)}</span>
                </td>
                <td>{text(r.fields.email)}</td>
                <td>{text(r.fields.city)}</td>
                <td>{text(r.fields.owner)}</td>
                <td>{r.version}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      </div>
      {editing && <EditCustomerDialog id={editing} onClose={() => setEditing(null)} />}
    </section>
  );
}
