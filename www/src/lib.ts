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
  bookedBy: "Booked by",
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

/**
 * A day in the person's own date format and the browser's zone ("Thu, Dec
 * 10" in en-US, "Do., 10. Dez." in de-AT), or "" for no date.
 */
export function day(value: string | number | Date): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
}

/** When a booking is: "Thu, Dec 10, 09:00–10:00" in the person's zone and date format. */
export function bookingTime(start: FieldValue | undefined, end: FieldValue | undefined): string {
  const from = clock(text(start));
  const to = clock(text(end));
  const on = day(text(start));
  if (!on || !from) return "";
  return to ? `${on}, ${from}–${to}` : `${on}, ${from}`;
}

/** What a record is called in a sentence: "customer", "booking". */
export function kindOf(collection: string): string {
  return collection === "customers" ? "customer" : collection === "calendar_events" ? "booking" : "record";
}

/** A record's name for people: the customer's name, the booking's title; never its id. */
export function recordName(collection: string, fields: Record<string, FieldValue | undefined> | null | undefined): string {
  const named = text(fields?.name ?? fields?.title);
  return named || `a ${kindOf(collection)}`;
}

/** Fields whose values are points in time (shown in the person's zone). */
const TIME_FIELDS = new Set(["start", "end"]);

/** A field's value for people: times in the person's zone and date format, "(empty)" for nothing. */
export function fieldValue(field: string, value: FieldValue | undefined): string {
  const t = text(value);
  if (t === "") return "(empty)";
  if (TIME_FIELDS.has(field)) {
    const on = day(t);
    return on ? `${on}, ${clock(t)}` : t;
  }
  return t;
}

/** Whether a field holds a point in time (no free typing of it in a table cell). */
export function isTimeField(field: string): boolean {
  return TIME_FIELDS.has(field);
}

/**
 * A point in time for people, in the browser's zone and the person's date
 * format, 24-hour: "Nov 23, 2026 09:00" in en-US, "23. Nov. 2026 09:00" in de-AT.
 */
export function when(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === "") return "";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" })} ${clock(d)}`;
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

/**
 * The conflicts this person put off with "Decide later", kept per user in
 * this browser: a reload does not open them again (they wait, marked in the
 * list and the status bar, until the person asks for them).
 */
const LATER_KEY = "crm-sync-demo.later.";

export function readLater(user: string): Set<string> {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(LATER_KEY + user) ?? "[]");
    if (Array.isArray(parsed)) return new Set(parsed.filter((x): x is string => typeof x === "string"));
  } catch {
    // Storage blocked or garbage: nothing put off.
  }
  return new Set();
}

export function writeLater(user: string, ids: Set<string>): void {
  try {
    if (ids.size === 0) localStorage.removeItem(LATER_KEY + user);
    else localStorage.setItem(LATER_KEY + user, JSON.stringify([...ids]));
  } catch {
    // Storage blocked: put off for as long as the page lasts.
  }
}

/** A spreadsheet sync's phase in words (the API's phase names are for code). */
export const SYNC_PHASE_WORDS: Record<string, string> = {
  idle: "Not running",
  starting: "Starting",
  queued: "Waiting its turn",
  downloading: "Reading the sheet",
  processing: "Going through the rows",
  saving: "Saving",
  complete: "Done",
  error: "Stopped",
  cancelled: "Cancelled",
};

/** Why a spreadsheet sync stopped, for the person who started it. */
export function syncFailure(error: { code: string; message: string }): string {
  switch (error.code) {
    case "sync_not_found":
      return "The server no longer knows this sync (it may have restarted). Start it again.";
    case "timeout":
      return "The sync took too long and was given up. Start it again.";
    case "network":
      return "The server could not be reached. Start it again once you are back online.";
    case "unauthorized":
      return "You were signed out. Sign in and start it again.";
    default:
      return plain(error.message);
  }
}
