import { useDeferredValue, useMemo, useState } from "react";
import type { CrmRecord } from "crm-sync";
import { useConflicts, useCrm, usePending, useRecords } from "crm-sync/react";
import { EditCustomerDialog } from "../components/EditCustomerDialog";
import { NewCustomerDialog } from "../components/NewCustomerDialog";
import { CUSTOMER_STATUSES, explain, text } from "../lib";
import { useLoad } from "../useLoad";

const SEARCHED = ["name", "email", "phone", "city", "owner"];
const COLUMNS = [
  { field: "name", label: "Name" },
  { field: "status", label: "Status" },
  { field: "email", label: "Email" },
  { field: "city", label: "City" },
  { field: "owner", label: "Owner" },
] as const;
type Sort = { field: string; dir: "asc" | "desc" };

function matches(record: CrmRecord, query: string, status: string): boolean {
  if (status && record.fields.status !== status) return false;
  if (!query) return true;
  return SEARCHED.some((f) => text(record.fields[f]).toLowerCase().includes(query));
}

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** The customers table: search, status filter, sorting, pending and conflict markers, add, edit. */
export function CustomersPage() {
  const crm = useCrm();
  const { loading, error } = useLoad("customers");
  const records = useRecords("customers");
  const pending = usePending();
  const conflicts = useConflicts();
  const [query, setQuery] = useState("");
  const [status, setStatus] = useState("");
  const [sort, setSort] = useState<Sort>({ field: "name", dir: "asc" });
  const [editing, setEditing] = useState<string | null>(null);
  const [adding, setAdding] = useState(false);
  const [added, setAdded] = useState<string | null>(null);
  const deferredQuery = useDeferredValue(query.trim().toLowerCase());

  const pendingIds = useMemo(
    () => new Set(pending.filter((m) => m.collection === "customers").map((m) => m.recordId)),
    [pending],
  );
  const conflictIds = useMemo(
    () => new Set(conflicts.filter((c) => c.collection === "customers").map((c) => c.recordId)),
    [conflicts],
  );
  const shown = useMemo(() => {
    const rows = records.filter((r) => matches(r, deferredQuery, status));
    const sign = sort.dir === "asc" ? 1 : -1;
    return rows.sort(
      (a, b) => sign * collator.compare(text(a.fields[sort.field]), text(b.fields[sort.field])) || collator.compare(a.id, b.id),
    );
  }, [records, deferredQuery, status, sort]);
  const stale = records.some((r) => r.stale);

  function sortBy(field: string) {
    setSort((s) => (s.field === field ? { field, dir: s.dir === "asc" ? "desc" : "asc" } : { field, dir: "asc" }));
  }

  return (
    <section aria-labelledby="customers-title">
      <div className="page-head">
        <h1 id="customers-title">Customers</h1>
        <button type="button" className="primary" onClick={() => setAdding(true)}>
          New customer
        </button>
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
      {added && (
        <p role="status" className="ok">
          {added}
        </p>
      )}
      <p className="hint" aria-live="polite">
        {shown.length} of {records.length} customers
      </p>
      <div className="table-scroll">
        <table aria-label="Customers" className="customers">
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th
                  key={c.field}
                  scope="col"
                  className={`col-${c.field}`}
                  aria-sort={sort.field === c.field ? (sort.dir === "asc" ? "ascending" : "descending") : undefined}
                >
                  <button type="button" className="sort" onClick={() => sortBy(c.field)}>
                    {c.label}
                    <span aria-hidden="true" className="sort-mark">
                      {sort.field === c.field ? (sort.dir === "asc" ? " ▲" : " ▼") : ""}
                    </span>
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.map((confirmed) => {
              const isPending = pendingIds.has(confirmed.id);
              const inConflict = conflictIds.has(confirmed.id);
              // Rows with staged changes show them (the view), marked pending.
              const r = isPending ? (crm.view("customers", confirmed.id) ?? confirmed) : confirmed;
              const className = [isPending && "pending", inConflict && "in-conflict"].filter(Boolean).join(" ");
              return (
                <tr key={r.id} data-id={r.id} className={className || undefined}>
                  <td className="col-name">
                    <button type="button" className="link" onClick={() => setEditing(r.id)}>
                      {text(r.fields.name) || r.id}
                    </button>
                    {isPending && (
                      <span className="badge pending" title="Changes not yet confirmed by the server">
                        pending
                      </span>
                    )}
                    {inConflict && (
                      <span className="badge conflict" title="Someone else changed this too: resolve the conflict">
                        conflict
                      </span>
                    )}
                  </td>
                  <td className="col-status">
                    <span className={`status status-${text(r.fields.status)}`}>{text(r.fields.status)}</span>
                  </td>
                  <td className="col-email">{text(r.fields.email)}</td>
                  <td className="col-city">{text(r.fields.city)}</td>
                  <td className="col-owner">{text(r.fields.owner)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {!loading && shown.length === 0 && (
          <div className="empty" role="status" data-testid="empty-state">
            {records.length === 0 ? (
              <p>No customers yet. Add the first one with “New customer”.</p>
            ) : (
              <>
                <p>No customer matches {query.trim() ? `“${query.trim()}”` : "this filter"}{status ? ` with status ${status}` : ""}.</p>
                <button
                  type="button"
                  onClick={() => {
                    setQuery("");
                    setStatus("");
                  }}
                >
                  Clear search
                </button>
              </>
            )}
          </div>
        )}
      </div>
      {editing && <EditCustomerDialog id={editing} onClose={() => setEditing(null)} />}
      {adding && (
        <NewCustomerDialog
          onClose={() => setAdding(false)}
          onCreated={(note) => {
            setAdding(false);
            setAdded(note);
            setQuery("");
          }}
        />
      )}
    </section>
  );
}
