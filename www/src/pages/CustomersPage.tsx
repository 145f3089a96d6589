import { useDeferredValue, useMemo, useState } from "react";
import type { QueryOptions } from "crm-sync";
import { useConflicts, useCrmStatus, usePending, useQuery } from "crm-sync/react";
import { EditCustomerDialog } from "../components/EditCustomerDialog";
import { NewCustomerDialog } from "../components/NewCustomerDialog";
import { PresenceTags } from "../components/Presence";
import { CUSTOMER_STATUSES, explain, text } from "../lib";
import { useLoad } from "../useLoad";

/**
 * Rows a page of the table shows. The client sorts and pages (`crm.query`,
 * kept and patched as records change), so a page costs the same at 200 or
 * 100,000 customers.
 */
const PAGE_SIZE = 250;
const COLUMNS = [
  { field: "name", label: "Name" },
  { field: "status", label: "Status" },
  { field: "email", label: "Email" },
  { field: "city", label: "City" },
  { field: "owner", label: "Owner" },
] as const;
type Sort = { field: string; dir: "asc" | "desc" };

/** The customers table: search, status filter, sorting, paging, pending and conflict markers, add, edit. */
export function CustomersPage() {
  const { loading, error } = useLoad("customers");
  const crmStatus = useCrmStatus();
  // Until `load` answers, the list arrives bit by bit: page by page from
  // the server (the first visit, or the stored copy could not be brought
  // up to date), or run by run from this device's copy on a later visit.
  const arriving = loading;
  const pending = usePending();
  const conflicts = useConflicts();
  const [query, setQuery] = useState("");
  const [status, setStatus] = useState("");
  const [sort, setSort] = useState<Sort>({ field: "name", dir: "asc" });
  const [page, setPage] = useState(0);
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
  const matching: QueryOptions = {
    ...(status ? { where: { status } } : {}),
    ...(deferredQuery ? { search: deferredQuery } : {}),
    orderBy: [sort.field, sort.dir],
  };
  // How many match, to know the last page; then the page itself.
  const { total } = useQuery("customers", { ...matching, limit: 0 });
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const current = Math.min(page, pages - 1);
  const { items: shown } = useQuery("customers", { ...matching, limit: PAGE_SIZE, offset: current * PAGE_SIZE });
  const all = useQuery("customers", { limit: 0 }).total;
  const stale = shown.some((r) => r.stale);

  function sortBy(field: string) {
    setSort((s) => (s.field === field ? { field, dir: s.dir === "asc" ? "desc" : "asc" } : { field, dir: "asc" }));
    setPage(0);
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
            <input
              type="search"
              value={query}
              onChange={(e) => {
                setQuery(e.target.value);
                setPage(0);
              }}
              placeholder="name, email, city…"
            />
          </label>
          <label>
            Status filter
            <select
              value={status}
              onChange={(e) => {
                setStatus(e.target.value);
                setPage(0);
              }}
            >
              <option value="">all</option>
              {CUSTOMER_STATUSES.map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
        </div>
      </div>
      {loading && all === 0 && <p role="status">Loading customers…</p>}
      {error != null && (
        <p role="alert" className="error">
          Could not load customers: {explain(error)}
        </p>
      )}
      {stale && (
        <p className="hint" data-testid="stale-hint">
          {crmStatus.online
            ? "Showing the copy stored on this device while changes made elsewhere come in."
            : "Showing the copy stored on this device (offline)."}
        </p>
      )}
      {added && (
        <p role="status" className="ok">
          {added}
        </p>
      )}
      {/* While the list is still arriving (from the server or from this
          device), what is here is not the whole: never say "1000 of 1000". */}
      <p className="hint" aria-live="polite" data-testid="customer-count">
        {arriving && all > 0 ? `Loading customers… ${all} so far` : `${total} of ${all} customers`}
      </p>
      {pages > 1 && <Pager current={current} pages={pages} onPage={setPage} />}
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
            {shown.map((r) => {
              // The query runs over `view`: rows with staged changes show them.
              const isPending = pendingIds.has(r.id) || r.pending === true;
              const inConflict = conflictIds.has(r.id);
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
                    <PresenceTags id={r.id} />
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
            {all === 0 ? (
              <p>No customers yet. Add the first one with “New customer”.</p>
            ) : (
              <>
                <p>No customer matches {query.trim() ? `“${query.trim()}”` : "this filter"}{status ? ` with status ${status}` : ""}.</p>
                <button
                  type="button"
                  onClick={() => {
                    setQuery("");
                    setStatus("");
                    setPage(0);
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

/** Previous / next and where in the pages the table is. */
function Pager({ current, pages, onPage }: { current: number; pages: number; onPage: (page: number) => void }) {
  return (
    <nav className="pager" aria-label="Customer pages">
      <button type="button" disabled={current === 0} onClick={() => onPage(current - 1)}>
        Previous page
      </button>
      <span aria-live="polite">
        Page {current + 1} of {pages}
      </span>
      <button type="button" disabled={current >= pages - 1} onClick={() => onPage(current + 1)}>
        Next page
      </button>
    </nav>
  );
}
