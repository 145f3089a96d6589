import { useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { CrmError, CrmSync } from "crm-sync";
import { CrmProvider, useConflicts, useCrm, useSyncState } from "crm-sync/react";
import { ConflictDialog } from "./components/ConflictDialog";
import { StatusBar } from "./components/StatusBar";
import { SyncBadge } from "./components/SyncBadge";
import { Toasts } from "./components/Toasts";
import { KeptContext, KeptNotices } from "./kept";
import { explain, readLater, readSession, writeLater, writeSession } from "./lib";
import { UpdatePrompt } from "./pwa";
import { CalendarPage } from "./pages/CalendarPage";
import { CustomersPage } from "./pages/CustomersPage";
import { LoginPage } from "./pages/LoginPage";
import { ServerPage } from "./pages/ServerPage";
import { SettingsPage } from "./pages/SettingsPage";
import { TeamPage } from "./pages/TeamPage";

const PAGES = [
  { hash: "#/customers", label: "Customers" },
  { hash: "#/calendar", label: "Calendar" },
  { hash: "#/team", label: "Team activity" },
  { hash: "#/settings", label: "Settings" },
] as const;
/** Pages reached by a link, not from the main menu. */
const OTHER_PAGES = ["#/server"] as const;
type PageHash = (typeof PAGES)[number]["hash"] | (typeof OTHER_PAGES)[number];

// Navigation is the location hash: reloads and the back button work
// without a router.
function subscribeHash(listener: () => void) {
  window.addEventListener("hashchange", listener);
  return () => window.removeEventListener("hashchange", listener);
}
function currentPage(): PageHash {
  const hash = window.location.hash;
  return PAGES.find((p) => p.hash === hash)?.hash ?? OTHER_PAGES.find((p) => p === hash) ?? "#/customers";
}

type Session = { state: "starting" } | { state: "out"; notice: string | null } | { state: "in"; crm: CrmSync };

/** Logs in (or reopens the stored session) and shows the CRM. */
export function App() {
  const [session, setSession] = useState<Session>(() =>
    readSession() ? { state: "starting" } : { state: "out", notice: null },
  );

  // A reload keeps the session: reopen it with the stored token.
  useEffect(() => {
    const stored = readSession();
    if (!stored) return;
    let live = true;
    CrmSync.open({ baseUrl: "/api", token: stored.token, user: stored.user }).then(
      (crm) => {
        if (live) setSession({ state: "in", crm });
        else crm.close();
      },
      (e: unknown) => {
        writeSession(null);
        if (live) setSession({ state: "out", notice: `Please log in again (${explain(e)}).` });
      },
    );
    return () => {
      live = false;
    };
  }, []);

  // The module says when the session ends (401 anywhere, or a logout in
  // another tab).
  const crm = session.state === "in" ? session.crm : null;
  useEffect(() => {
    if (!crm) return;
    return crm.subscribe((event) => {
      if (event.type !== "session") return;
      writeSession(null);
      crm.close();
      setSession({
        state: "out",
        notice: event.state === "expired" ? "Your session has expired; please log in again." : "You were logged out.",
      });
    });
  }, [crm]);

  if (session.state === "starting") {
    return (
      <>
        <UpdatePrompt />
        <p className="loading">Opening your session…</p>
      </>
    );
  }
  if (session.state === "out") {
    return (
      <>
        <UpdatePrompt />
        <LoginPage
        notice={session.notice}
        onLogin={(c) => {
          writeSession({ token: c.token, user: c.user });
          setSession({ state: "in", crm: c });
        }}
      />
      </>
    );
  }
  return (
    <CrmProvider crm={session.crm}>
      <UpdatePrompt />
      <Shell
        onLogout={async () => {
          const c = session.crm;
          try {
            await c.logout();
          } catch (e) {
            // Edits not on the server yet are never dropped silently: the
            // person decides. A logout that could not reach the server
            // changed nothing, and says so.
            if (!(e instanceof CrmError) || e.code !== "pending_changes") {
              window.alert(`Could not log out: ${explain(e)}`);
              return;
            }
            if (!window.confirm(`${e.message}.\n\nLog out anyway and discard them?`)) return;
            try {
              await c.logout({ discard: true });
            } catch (again) {
              window.alert(`Could not log out: ${explain(again)}`);
              return;
            }
          }
          writeSession(null);
          setSession({ state: "out", notice: null });
        }}
      />
    </CrmProvider>
  );
}

function Shell({ onLogout }: { onLogout: () => void }) {
  const crm = useCrm();
  const page = useSyncExternalStore(subscribeHash, currentPage);
  const conflicts = useConflicts();
  // Conflicts put off with "Decide later" stay put off over a reload.
  const [later, setLaterState] = useState<Set<string>>(() => readLater(crm.user));
  const setLater = (update: (l: Set<string>) => Set<string>) =>
    setLaterState((l) => {
      const next = update(l);
      writeLater(crm.user, next);
      return next;
    });
  // A conflict resolved (here or in another tab) is no longer put off.
  // (None at all may also mean not read yet after a reload: left alone then.)
  useEffect(() => {
    if (conflicts.length === 0) return;
    const open = new Set(conflicts.map((c) => c.id));
    if ([...later].some((id) => !open.has(id))) setLater((l) => new Set([...l].filter((id) => open.has(id))));
  }, [conflicts, later]);
  const [menuOpen, setMenuOpen] = useState(false);
  const shownConflict = conflicts.find((c) => !later.has(c.id));
  const kept = useMemo(() => new KeptNotices(crm), [crm]);
  useEffect(() => kept.listen(), [kept]);
  // A page chosen from the collapsed menu closes it.
  useEffect(() => setMenuOpen(false), [page]);

  // A finished sync may have added or changed many customers at once:
  // catch up now rather than at the changes feed's next look.
  const syncPhase = useSyncState()?.phase;
  useEffect(() => {
    if (syncPhase === "complete") crm.load("customers").catch(() => {});
  }, [crm, syncPhase]);

  return (
    <KeptContext.Provider value={kept}>
      <a className="skip" href="#content">
        Skip to content
      </a>
      <header className={menuOpen ? "top menu-open" : "top"}>
        <strong className="brand">crm-sync</strong>
        <span className="user" data-testid="user">
          Signed in as {crm.user}
        </span>
        <button
          type="button"
          className="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="main-menu"
          onClick={() => setMenuOpen((o) => !o)}
        >
          <span aria-hidden="true">☰</span> Menu
        </button>
        <SyncBadge onOpen={() => (window.location.hash = "#/settings")} />
        <div className="menu" id="main-menu">
          <nav aria-label="Main">
            {PAGES.map((p) => (
              <a
                key={p.hash}
                href={p.hash}
                aria-current={page === p.hash ? "page" : undefined}
                onClick={() => setMenuOpen(false)}
              >
                {p.label}
              </a>
            ))}
          </nav>
          <button type="button" className="logout" onClick={onLogout}>
            Log out
          </button>
        </div>
      </header>
      <StatusBar onShowConflicts={() => setLater(() => new Set())} />
      <main id="content" tabIndex={-1}>
        {page === "#/customers" && <CustomersPage />}
        {page === "#/calendar" && <CalendarPage />}
        {page === "#/team" && <TeamPage />}
        {page === "#/server" && <ServerPage />}
        {page === "#/settings" && <SettingsPage />}
      </main>
      <Toasts />
      {shownConflict && (
        <ConflictDialog
          key={shownConflict.id}
          conflict={shownConflict}
          onLater={() => setLater((l) => new Set(l).add(shownConflict.id))}
        />
      )}
    </KeptContext.Provider>
  );
}
