import { useState } from "react";
import { CrmError, CrmSync, type CrmRecord } from "crm-sync";

/** What a failed call tells the person: the CrmError's code and message. */
function explain(e: unknown): string {
  if (e instanceof CrmError) return `${e.code}: ${e.message}`;
  return String(e);
}

export function App() {
  const [crm, setCrm] = useState<CrmSync | null>(null);
  const [customers, setCustomers] = useState<CrmRecord[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function logIn(form: FormData) {
    setBusy(true);
    setError(null);
    try {
      const client = await CrmSync.login({
        baseUrl: "/api",
        username: String(form.get("username") ?? ""),
        password: String(form.get("password") ?? ""),
      });
      setCustomers(await client.load("customers"));
      setCrm(client);
    } catch (e) {
      setError(explain(e));
    } finally {
      setBusy(false);
    }
  }

  if (!crm) {
    return (
      <main className="login">
        <h1>crm-sync demo</h1>
        <form action={logIn} aria-label="Log in">
          <label>
            User <input name="username" defaultValue="alice" autoComplete="username" />
          </label>
          <label>
            Password <input name="password" type="password" defaultValue="demo" autoComplete="current-password" />
          </label>
          <button type="submit" disabled={busy}>
            Log in
          </button>
          {error && (
            <p role="alert" className="error">
              {error}
            </p>
          )}
        </form>
        <p className="hint">Demo users: alice, bob, user01 .. user50; password: demo</p>
      </main>
    );
  }

  return (
    <main>
      <header>
        <h1>Customers</h1>
        <span data-testid="user">Signed in as {crm.user}</span>
      </header>
      <table aria-label="Customers">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Email</th>
            <th>Version</th>
          </tr>
        </thead>
        <tbody>
          {customers.map((c) => (
            <tr key={c.id} data-id={c.id}>
              <td>{String(c.fields.name ?? "")}</td>
              <td>{String(c.fields.status ?? "")}</td>
              <td>{String(c.fields.email ?? "")}</td>
              <td>{c.version}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
