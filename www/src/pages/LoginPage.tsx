import { useState } from "react";
import { CrmSync } from "crm-sync";
import { plain } from "../lib";

/** Logs in as a demo user; hands the client up. */
export function LoginPage({ onLogin, notice }: { onLogin: (crm: CrmSync) => void; notice: string | null }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function logIn(form: FormData) {
    setBusy(true);
    setError(null);
    try {
      const crm = await CrmSync.login({
        baseUrl: "/api",
        username: String(form.get("username") ?? ""),
        password: String(form.get("password") ?? ""),
      });
      onLogin(crm);
    } catch (e) {
      setError(plain(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="login">
      <h1>crm-sync demo</h1>
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
      <form action={logIn} aria-label="Log in">
        <label>
          User <input name="username" defaultValue="alice" autoComplete="username" required />
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
