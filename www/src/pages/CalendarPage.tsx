import { useMemo, useState, type FormEvent } from "react";
import { CrmError, findOverlaps, type CalendarEventLike, type CrmRecord, type Fields } from "crm-sync";
import { useCrm, useLoad, useRecords } from "../hooks";
import { explain, text, when } from "../lib";

interface Booking {
  title: string;
  resource: string;
  start: string;
  end: string;
}

type Outcome =
  | { kind: "warning"; booking: Booking; overlaps: CalendarEventLike[] }
  | { kind: "refused"; message: string; overlaps: string[] }
  | { kind: "error"; message: string }
  | { kind: "booked"; message: string };

function today(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function label(e: CalendarEventLike | CrmRecord): string {
  const f: Record<string, unknown> = "fields" in e ? e.fields : e;
  const title = typeof f.title === "string" && f.title ? f.title : e.id;
  return `${title} (${String(f.resource ?? "")}, ${when(f.start as string)} – ${when(f.end as string)})`;
}

/** The events the server named in a 409 `overlap` (`details.conflicts`). */
function serverOverlaps(e: CrmError): string[] {
  const details = e.details as { conflicts?: unknown } | null | undefined;
  if (!details || !Array.isArray(details.conflicts)) return [];
  return details.conflicts
    .filter((c): c is CrmRecord => !!c && typeof c === "object" && "fields" in c && "id" in c)
    .map(label);
}

/** Calendar events and a booking form that warns of double bookings. */
export function CalendarPage() {
  const crm = useCrm();
  const { loading, error } = useLoad("calendar_events");
  const events = useRecords("calendar_events");
  const [form, setForm] = useState({ title: "", resource: "room-a", date: today(), from: "14:00", to: "15:00" });
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState(false);

  const sorted = useMemo(
    () => [...events].sort((a, b) => text(a.fields.start).localeCompare(text(b.fields.start))),
    [events],
  );
  const resources = useMemo(
    () => [...new Set(events.map((e) => text(e.fields.resource)).filter(Boolean))].sort(),
    [events],
  );

  async function book(booking: Booking) {
    setBusy(true);
    setOutcome(null);
    const fields: Fields = { ...booking, status: "confirmed" };
    try {
      const result = await crm.create("calendar_events", fields);
      setOutcome({
        kind: "booked",
        message:
          result.status === "queued"
            ? `Offline: “${booking.title}” is queued; the server checks it for double bookings when it is sent.`
            : `Booked “${booking.title}” on ${booking.resource}.`,
      });
    } catch (e) {
      if (e instanceof CrmError && e.code === "overlap") {
        setOutcome({ kind: "refused", message: e.message, overlaps: serverOverlaps(e) });
        // The refused create stays in `crm.failed()`; retrying it cannot
        // succeed and the person has just been told, so drop it.
        for (const m of crm.failed()) {
          if (
            m.op === "create" && m.collection === "calendar_events" && m.error?.code === "overlap" &&
            m.fields?.start === booking.start && m.fields?.end === booking.end && m.fields?.resource === booking.resource
          ) {
            await crm.discard(m.mutationId).catch(() => {});
          }
        }
      } else {
        setOutcome({ kind: "error", message: `Not booked: ${explain(e)}` });
      }
    } finally {
      setBusy(false);
    }
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    const start = new Date(`${form.date}T${form.from}`);
    const end = new Date(`${form.date}T${form.to}`);
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start) {
      setOutcome({ kind: "error", message: "The end must be after the start." });
      return;
    }
    const booking: Booking = {
      title: form.title.trim() || "Booking",
      resource: form.resource.trim(),
      start: start.toISOString(),
      end: end.toISOString(),
    };
    let overlaps: CalendarEventLike[];
    try {
      overlaps = findOverlaps(events, { id: "(new booking)", ...booking });
    } catch (err) {
      setOutcome({ kind: "error", message: `Cannot check this booking: ${explain(err)}` });
      return;
    }
    if (overlaps.length > 0) setOutcome({ kind: "warning", booking, overlaps });
    else void book(booking);
  }

  const set = (key: keyof typeof form) => (e: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [key]: e.target.value }));

  return (
    <section aria-labelledby="calendar-title">
      <h1 id="calendar-title">Calendar</h1>
      <div className="calendar-layout">
        <form className="booking-form" onSubmit={submit} aria-labelledby="book-title">
          <h2 id="book-title">Book a resource</h2>
          <label>
            Title
            <input value={form.title} onChange={set("title")} required />
          </label>
          <label>
            Resource
            <input value={form.resource} onChange={set("resource")} list="resources" required />
            <datalist id="resources">
              {resources.map((r) => (
                <option key={r} value={r} />
              ))}
            </datalist>
          </label>
          <label>
            Date
            <input type="date" value={form.date} onChange={set("date")} required />
          </label>
          <div className="row">
            <label>
              From
              <input type="time" value={form.from} onChange={set("from")} required />
            </label>
            <label>
              To
              <input type="time" value={form.to} onChange={set("to")} required />
            </label>
          </div>
          <button type="submit" className="primary" disabled={busy}>
            Book
          </button>
          {outcome?.kind === "warning" && (
            <div className="warning" role="alert" data-testid="overlap-warning">
              <p>
                <strong>Double booking:</strong> {outcome.booking.resource} is already booked then:
              </p>
              <ul>
                {outcome.overlaps.map((o) => (
                  <li key={o.id}>{label(o)}</li>
                ))}
              </ul>
              <div className="actions">
                <button type="button" onClick={() => setOutcome(null)}>
                  Change the time
                </button>
                <button type="button" onClick={() => void book(outcome.booking)}>
                  Book anyway
                </button>
              </div>
            </div>
          )}
          {outcome?.kind === "refused" && (
            <div className="error-box" role="alert" data-testid="booking-refused">
              <p>
                <strong>Not booked: the server refused a double booking.</strong> {outcome.message}.
              </p>
              {outcome.overlaps.length > 0 && (
                <ul>
                  {outcome.overlaps.map((o) => (
                    <li key={o}>Overlaps {o}</li>
                  ))}
                </ul>
              )}
            </div>
          )}
          {outcome?.kind === "error" && (
            <p role="alert" className="error">
              {outcome.message}
            </p>
          )}
          {outcome?.kind === "booked" && (
            <p role="status" className="ok">
              {outcome.message}
            </p>
          )}
        </form>
        <div className="events">
          {loading && events.length === 0 && <p role="status">Loading events…</p>}
          {error != null && (
            <p role="alert" className="error">
              Could not load events: {explain(error)}
            </p>
          )}
          <table aria-label="Calendar events">
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col">Resource</th>
                <th scope="col">Start</th>
                <th scope="col">End</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {sorted.map((e) => (
                <tr key={e.id} data-id={e.id}>
                  <td>{text(e.fields.title)}</td>
                  <td>{text(e.fields.resource)}</td>
                  <td>{when(text(e.fields.start))}</td>
                  <td>{when(text(e.fields.end))}</td>
                  <td>{text(e.fields.status)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}
