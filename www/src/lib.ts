import { CrmError, type FieldValue } from "crm-sync";

/** What a failed call tells the person: the CrmError's code and message. */
export function explain(e: unknown): string {
  if (e instanceof CrmError) return `${e.code}: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The message alone, for people (no machine code in front). */
export function plain(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message ? message.charAt(0).toUpperCase() + message.slice(1) : "Something went wrong";
}

/** How people call a customer field. */
export const FIELD_LABELS: Record<string, string> = {
  name: "Name",
  email: "Email",
  phone: "Phone",
  owner: "Owner",
  city: "City",
  status: "Status",
  title: "Title",
  resource: "Resource",
  start: "Start",
  end: "End",
};

export function fieldLabel(field: string): string {
  return FIELD_LABELS[field] ?? field;
}

/** A field value as text for an input or a cell. */
export function text(value: FieldValue | undefined): string {
  return value === null || value === undefined ? "" : String(value);
}

/** "09:05": a time of day, 24-hour, in the browser's zone. */
export function clock(value: string | number | Date): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return "";
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** A point in time for people: "2026-11-23 09:00" in the browser's zone. */
export function when(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === "") return "";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export const CUSTOMER_STATUSES = ["lead", "prospect", "customer", "churned"] as const;

/** The server refuses an email that does not look like one; say so before sending. */
export function looksLikeEmail(value: string): boolean {
  return /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(value);
}

/** The token of this browser's session, so a reload does not log out. */
export interface StoredSession {
  token: string;
  user: string;
}

const SESSION_KEY = "crm-sync-demo.session";

export function readSession(): StoredSession | null {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    if (!raw) return null;
    const parsed: unknown = JSON.parse(raw);
    if (
      parsed && typeof parsed === "object" &&
      typeof (parsed as StoredSession).token === "string" &&
      typeof (parsed as StoredSession).user === "string"
    ) {
      return parsed as StoredSession;
    }
  } catch {
    // Storage blocked or garbage: no session.
  }
  return null;
}

export function writeSession(session: StoredSession | null): void {
  try {
    if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else localStorage.removeItem(SESSION_KEY);
  } catch {
    // Storage blocked: the session lasts as long as the page.
  }
}
