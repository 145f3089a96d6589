import { useMemo, useState, type FormEvent } from "react";
import {
  CrmError,
  findOverlaps,
  type CalendarEventLike,
  type CrmRecord,
  type Fields,
  type FailedMutation,
  type PendingMutation,
  type SaveResult,
} from "crm-sync";
import { useConflicts, useCrm, useFailed, usePending, useRecords } from "crm-sync/react";
import { ActivityTimeline } from "../components/ActivityTimeline";
import { Dialog } from "../components/Dialog";
import { bookingTime, clock, day, explain, plain, text } from "../lib";
import { useLoad } from "../useLoad";

/** A change of the person's not on the server yet: queued, or refused for good. */
type Unsent = PendingMutation | FailedMutation;

interface Slot {
  resource: string;
  start: string;
  end: string;
}

type Outcome =
  | { kind: "warning"; resource: string; overlaps: CalendarEventLike[] }
  | { kind: "refused"; message: string; overlaps: string[] }
  | { kind: "error"; message: string }
  | { kind: "done"; message: string; queued?: string };

const pad = (n: number) => String(n).padStart(2, "0");
const isoDay = (d: Date) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Every quarter hour of a day, 24-hour: the time pickers' choices. */
const TIMES = Array.from({ length: 96 }, (_, i) => `${pad(Math.floor(i / 4))}:${pad((i % 4) * 15)}`);

/** Monday 00:00 of the week holding `d`. */
function mondayOf(d: Date): Date {
  const m = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  m.setDate(m.getDate() - ((m.getDay() + 6) % 7));
  return m;
}

function range(e: CalendarEventLike | CrmRecord): string {
  const f: Record<string, unknown> = "fields" in e ? e.fields : e;
  return `${clock(String(f.start))}–${clock(String(f.end))}`;
}

/** "Team meeting (room-a, Thu, Dec 10, 09:00–10:00)": in the person's zone and date format. */
function label(e: CalendarEventLike | CrmRecord): string {
  const f: Record<string, unknown> = "fields" in e ? e.fields : e;
  const title = typeof f.title === "string" && f.title ? f.title : "a booking";
  return `${title} (${String(f.resource ?? "")}, ${bookingTime(String(f.start), String(f.end))})`;
}

/** Who booked it: the field the demo writes, else whoever made the record. */
function bookedBy(e: CrmRecord): string {
  return text(e.fields.bookedBy) || e.updatedBy;
}

/** "your booking" or "alice's booking": whose a booking is, said before changing it. */
function whose(e: CrmRecord, me: string): string {
  const owner = bookedBy(e);
  return owner === me ? "your booking" : `${owner}'s booking`;
}

/** The bookings the server named in a 409 `overlap` (its `details.conflicts`), in whatever shape they came. */
function overlapsIn(details: unknown): CrmRecord[] {
  const conflicts = (details as { conflicts?: unknown } | null | undefined)?.conflicts;
  if (!Array.isArray(conflicts)) return [];
  return conflicts.filter(
    (c): c is CrmRecord =>
      !!c && typeof c === "object" && "id" in c && !!(c as CrmRecord).fields && typeof (c as CrmRecord).fields === "object",
  );
}

/**
 * Who has the slot, and with what: "alice's “Demo” (room-a, Thu, Dec 10,
 * 10:00–11:00)"; `short` leaves out the room and the day (said already).
 */
function holder(e: CrmRecord, short = false): string {
  const title = text(e.fields.title) || "booking";
  return short
    ? `${bookedBy(e)}'s “${title}” (${range(e)})`
    : `${bookedBy(e)}'s ${label(e).replace(/^(.*) \(/, "“$1” (")}`;
}

/** The events the server named in a 409 `overlap`, as people read them. */
function serverOverlaps(e: CrmError): string[] {
  return overlapsIn(e.details).map((o) => holder(o));
}

/**
 * Why the server refused a change for good, from `crm.failed()`: its code,
 * its message and its details (for `overlap`, the bookings in the way).
 */
function refusalOf(m: Unsent): { code: string; message: string; details: unknown } {
  if ("code" in m) return { code: m.code, message: m.message, details: m.details };
  return { code: m.error?.code ?? "", message: m.error?.message ?? "", details: null };
}

/** A booking not on the server yet (queued or refused), shaped as a record for the week and the dialogs. */
function asBooking(m: Unsent, me: string): CrmRecord {
  return {
    id: m.recordId,
    version: 0,
    updatedAt: new Date(m.createdAt).toISOString(),
    updatedBy: me,
    fields: { bookedBy: me, ...(m.fields ?? {}) },
    comments: [],
  } as CrmRecord;
}

/** `date` + `HH:MM` in the browser's zone as an RFC 3339 time, or null if the end is not after the start. */
function slotOf(date: string, from: string, to: string, resource: string): Slot | null {
  const start = new Date(`${date}T${from}`);
  const end = new Date(`${date}T${to}`);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start) return null;
  return { resource: resource.trim(), start: start.toISOString(), end: end.toISOString() };
}

/**
 * Checks a slot against what this tab knows, then writes it through the
 * staged, versioned path (`crm.create` or `crm.save`). The server checks
 * again: a booking made elsewhere in the meantime is refused with 409
 * `overlap`, which is said plainly, naming who has the slot. The refused
 * change stays in `crm.failed()` and in the week until the person chooses
 * another time or discards it: nothing they did goes without their word.
 */
function useBookingWriter() {
  const events = useRecords("calendar_events");
  return async function write(
    slot: Slot,
    id: string | null,
    send: () => Promise<SaveResult>,
  ): Promise<Outcome> {
    let overlaps: CalendarEventLike[];
    try {
      overlaps = findOverlaps(events, { id: id ?? "(new booking)", ...slot });
    } catch (err) {
      return { kind: "error", message: `Cannot check this booking: ${plain(err)}` };
    }
    if (overlaps.length > 0) return { kind: "warning", resource: slot.resource, overlaps };
    try {
      const result = await send();
      if (result.status === "queued") {
        return {
          kind: "done",
          message: "Offline: queued; the server checks it for double bookings when it is sent.",
          queued: result.mutationId,
        };
      }
      if (result.status === "conflict") {
        return { kind: "error", message: "Someone else changed this booking at the same time: choose what to keep." };
      }
      return { kind: "done", message: "" };
    } catch (e) {
      if (e instanceof CrmError && e.code === "overlap") {
        return { kind: "refused", message: e.message, overlaps: serverOverlaps(e) };
      }
      return { kind: "error", message: plain(e) };
    }
  };
}

function OutcomeView({ outcome, what }: { outcome: Outcome | null; what: string }) {
  if (!outcome) return null;
  switch (outcome.kind) {
    case "warning":
      return (
        <div className="warning" role="alert" data-testid="overlap-warning">
          <p>
            <strong>Double booking:</strong> {outcome.resource} is already booked then:
          </p>
          <ul>
            {outcome.overlaps.map((o) => (
              <li key={o.id}>{label(o)}</li>
            ))}
          </ul>
          <p>Nothing was {what}: choose another time or resource.</p>
        </div>
      );
    case "refused":
      return (
        <div className="error-box" role="alert" data-testid="booking-refused">
          <p>
            <strong>Not {what}: the server refused a double booking.</strong> {outcome.message}.
          </p>
          {outcome.overlaps.length > 0 && (
            <ul>
              {outcome.overlaps.map((o) => (
                <li key={o}>Taken by {o}</li>
              ))}
            </ul>
          )}
          <p>It waits in the week until you choose another time or discard it.</p>
        </div>
      );
    case "error":
      return (
        <p role="alert" className="error">
          {outcome.message}
        </p>
      );
    case "done":
      return outcome.message ? (
        <p role="status" className="ok">
          {outcome.message}
        </p>
      ) : null;
  }
}

/**
 * A change of a booking the server refused for good (`crm.failed()`): what
 * was not done and why; for a slot someone else has, who has it, with
 * "Choose another time"; otherwise "Try again". "Discard" drops it on the
 * person's word.
 */
function RefusalNote({ m, onAnotherTime }: { m: Unsent; onAnotherTime: () => void }) {
  const crm = useCrm();
  const [problem, setProblem] = useState<string | null>(null);
  const { code, message, details } = refusalOf(m);
  const what = m.op === "create" ? "booked" : m.op === "delete" ? "deleted" : m.fields?.start ? "moved" : "changed";
  const taken = code === "overlap" ? overlapsIn(details) : [];
  const resource = text(m.fields?.resource) || "the room";
  const act = (f: () => Promise<unknown>) => f().catch((e: unknown) => setProblem(plain(e)));
  return (
    <div className="refusal" data-testid="refusal">
      <p>
        <strong>Not {what}:</strong>{" "}
        {code === "overlap"
          ? `${resource} is taken then${taken.length > 0 ? ` by ${taken.map((t) => holder(t, true)).join("; ")}` : " by someone else"}.`
          : plain(new Error(message || "the server refused it"))}
      </p>
      <div className="actions">
        {code === "overlap" ? (
          <button type="button" onClick={onAnotherTime}>
            Choose another time
          </button>
        ) : (
          <button type="button" onClick={() => void act(() => crm.retry(m.mutationId))}>
            Try again
          </button>
        )}
        <button type="button" onClick={() => void act(() => crm.discard(m.mutationId))}>
          Discard
        </button>
      </div>
      {problem && <p className="error">{problem}</p>}
    </div>
  );
}

function TimeSelect({ label: name, value, onChange }: { label: string; value: string; onChange: (v: string) => void }) {
  return (
    <label>
      {name}
      <select value={value} onChange={(e) => onChange(e.target.value)}>
        {TIMES.map((t) => (
          <option key={t}>{t}</option>
        ))}
      </select>
    </label>
  );
}

/**
 * Moves a booking (day, times, resource) through `crm.save`; or, for a
 * change the server refused (`refused`), sends it again at another time (a
 * refused booking as a new `crm.create`, a refused move as a new save) and
 * then discards the refused one, so it is replaced, never lost.
 */
function MoveDialog({ event, refused, onClose }: { event: CrmRecord; refused?: Unsent; onClose: () => void }) {
  const crm = useCrm();
  const write = useBookingWriter();
  const start = new Date(text(event.fields.start));
  const end = new Date(text(event.fields.end));
  const [form, setForm] = useState({
    date: isoDay(start),
    from: clock(start),
    to: clock(end),
    resource: text(event.fields.resource),
  });
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState(false);
  // Someone else's booking is moved only once the person said yes to that.
  const owner = bookedBy(event);
  const theirs = owner !== crm.user;
  const [asked, setAsked] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const slot = slotOf(form.date, form.from, form.to, form.resource);
    if (!slot) return setOutcome({ kind: "error", message: "The end must be after the start." });
    if (theirs && !asked) {
      setAsked(true);
      setOutcome(null);
      return;
    }
    setBusy(true);
    const isNew = refused?.op === "create";
    const result = await write(slot, isNew ? null : event.id, () =>
      isNew
        ? crm.create("calendar_events", { ...(refused.fields ?? {}), ...slot })
        : crm.save("calendar_events", event.id, { ...slot }),
    );
    // A save of the record may itself have taken the refused change's place.
    if (result.kind === "done" && refused && crm.failed().some((f) => f.mutationId === refused.mutationId)) {
      try {
        await crm.discard(refused.mutationId);
      } catch (e) {
        setBusy(false);
        return setOutcome({ kind: "error", message: `Sent at the new time, but the refused one is still listed: ${plain(e)}` });
      }
    }
    setBusy(false);
    if (result.kind === "done" && !result.message) onClose();
    else setOutcome(result);
  }

  return (
    <Dialog
      title={`${refused ? "Another time for" : "Move"} “${text(event.fields.title) || "booking"}”`}
      onClose={onClose}
      className="sheet"
    >
      <p className="hint">
        {theirs ? `${owner}'s booking` : "Your booking"}: {text(event.fields.resource)}, {bookingTime(event.fields.start, event.fields.end)}
      </p>
      <form className="booking-form plain" onSubmit={submit} aria-label="Move booking">
        <label>
          Resource
          <input value={form.resource} onChange={(e) => setForm((f) => ({ ...f, resource: e.target.value }))} required />
        </label>
        <label>
          Date
          <input type="date" value={form.date} onChange={(e) => setForm((f) => ({ ...f, date: e.target.value }))} required />
        </label>
        <div className="row">
          <TimeSelect label="From" value={form.from} onChange={(v) => setForm((f) => ({ ...f, from: v }))} />
          <TimeSelect label="To" value={form.to} onChange={(v) => setForm((f) => ({ ...f, to: v }))} />
        </div>
        {theirs && asked ? (
          <div className="warning" role="alert" data-testid="move-ask">
            <p>
              This is <strong>{owner}'s booking</strong>. {owner} will see that you moved it. Move it anyway?
            </p>
            <div className="actions">
              <button type="submit" className="primary" disabled={busy}>
                Yes, move {owner}'s booking
              </button>
              <button type="button" onClick={() => setAsked(false)}>
                No
              </button>
            </div>
          </div>
        ) : (
          <div className="actions">
            <button type="submit" className="primary" disabled={busy}>
              {refused ? "Book this time" : "Move"}
            </button>
            <button type="button" onClick={onClose}>
              Keep as it is
            </button>
          </div>
        )}
        <OutcomeView outcome={outcome} what="moved" />
      </form>
      {event.version > 0 && (
        <details className="booking-history">
          <summary>History</summary>
          <ActivityTimeline collection="calendar_events" id={event.id} version={event.version} comments={[]} />
        </details>
      )}
    </Dialog>
  );
}

/** A week of bookings, a booking form that refuses double bookings, cancel and move. */
export function CalendarPage() {
  const crm = useCrm();
  const { loading, error } = useLoad("calendar_events");
  const events = useRecords("calendar_events");
  const pending = usePending();
  const conflicts = useConflicts();
  const write = useBookingWriter();
  const [monday, setMonday] = useState(() => mondayOf(new Date()));
  const [form, setForm] = useState({ title: "", resource: "room-a", date: isoDay(new Date()), from: "14:00", to: "15:00" });
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState(false);
  const [moving, setMoving] = useState<{ id: string; refused?: Unsent } | null>(null);
  const failed = useFailed();
  const [confirmCancel, setConfirmCancel] = useState<string | null>(null);
  const [rowNote, setRowNote] = useState<{ id: string; text: string } | null>(null);

  const pendingIds = useMemo(
    () => new Set(pending.filter((m) => m.collection === "calendar_events").map((m) => m.recordId)),
    [pending],
  );
  const conflictIds = useMemo(
    () => new Set(conflicts.filter((c) => c.collection === "calendar_events").map((c) => c.recordId)),
    [conflicts],
  );
  const resources = useMemo(
    () => [...new Set(events.map((e) => text(e.fields.resource)).filter(Boolean))].sort(),
    [events],
  );
  // This person's refused changes of bookings: a refused new booking is
  // shown in the week on its own, a refused change on the booking it is about.
  const refusedChanges = useMemo(
    () => new Map(failed.filter((m) => m.collection === "calendar_events" && m.op !== "create").map((m) => [m.recordId, m])),
    [failed],
  );
  // New bookings not on the server yet: queued (offline) or refused.
  const unsent = useMemo(
    () => [
      ...pending
        .filter((m) => m.collection === "calendar_events" && m.op === "create" && m.state !== "failed")
        .map((m) => ({ m, refused: false, record: asBooking(m, crm.user) })),
      ...failed
        .filter((m) => m.collection === "calendar_events" && m.op === "create")
        .map((m) => ({ m, refused: true, record: asBooking(m, crm.user) })),
    ],
    [pending, failed, crm.user],
  );
  const days = useMemo(() => {
    const list = Array.from({ length: 7 }, (_, i) => {
      const date = new Date(monday);
      date.setDate(monday.getDate() + i);
      return { day: date, key: isoDay(date), events: [] as CrmRecord[], unsent: [] as typeof unsent };
    });
    const end = new Date(monday.getTime() + 7 * DAY_MS + 2 * 60 * 60 * 1000);
    const dayOf = (r: CrmRecord) => {
      const start = new Date(text(r.fields.start));
      if (Number.isNaN(start.getTime()) || start < monday || start >= end) return undefined;
      return list.find((d) => d.key === isoDay(start));
    };
    for (const e of events) dayOf(e)?.events.push(e);
    for (const u of unsent) dayOf(u.record)?.unsent.push(u);
    for (const d of list) d.events.sort((a, b) => text(a.fields.start).localeCompare(text(b.fields.start)));
    return list;
  }, [events, unsent, monday]);
  const sunday = days[6].day;
  const todayKey = isoDay(new Date());

  async function submit(e: FormEvent) {
    e.preventDefault();
    const slot = slotOf(form.date, form.from, form.to, form.resource);
    if (!slot) return setOutcome({ kind: "error", message: "The end must be after the start." });
    const title = form.title.trim() || "Booking";
    setBusy(true);
    setOutcome(null);
    const fields: Fields = { title, ...slot, status: "confirmed", bookedBy: crm.user };
    const result = await write(slot, null, () => crm.create("calendar_events", fields));
    setBusy(false);
    if (result.kind === "done") {
      setOutcome({ ...result, message: result.message || `Booked “${title}” on ${slot.resource}, ${bookingTime(slot.start, slot.end)}.` });
      // Show the week of the new booking.
      setMonday(mondayOf(new Date(slot.start)));
    } else {
      setOutcome(result);
      // A refused booking waits in the week: show that week.
      if (result.kind === "refused") setMonday(mondayOf(new Date(slot.start)));
    }
  }

  async function cancel(event: CrmRecord) {
    setConfirmCancel(null);
    try {
      const result = await crm.save("calendar_events", event.id, { status: "cancelled" });
      setRowNote({
        id: event.id,
        text: result.status === "queued" ? "Cancellation queued: sent when you are back online." : "Cancelled.",
      });
    } catch (e) {
      setRowNote({ id: event.id, text: `Not cancelled: ${plain(e)}` });
    }
  }

  const set = (key: keyof typeof form) => (e: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [key]: e.target.value }));
  const shift = (weeks: number) => setMonday((m) => new Date(m.getFullYear(), m.getMonth(), m.getDate() + 7 * weeks));
  const movingEvent = !moving
    ? undefined
    : moving.refused?.op === "create"
      ? asBooking(moving.refused, crm.user)
      : events.find((e) => e.id === moving.id);

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
            <TimeSelect label="From" value={form.from} onChange={(v) => setForm((f) => ({ ...f, from: v }))} />
            <TimeSelect label="To" value={form.to} onChange={(v) => setForm((f) => ({ ...f, to: v }))} />
          </div>
          <button type="submit" className="primary" disabled={busy}>
            Book
          </button>
          <OutcomeView
            outcome={
              // The queued booking was sent meanwhile and refused: not "queued" any more.
              outcome?.kind === "done" && outcome.queued && failed.some((m) => m.mutationId === outcome.queued)
                ? { kind: "error", message: "Sent, and not booked: the week says why." }
                : outcome
            }
            what="booked"
          />
        </form>
        <div className="week-view">
          <div className="week-nav">
            <h2 id="week-title" data-testid="week-title">
              Week of {day(monday)} – {day(sunday)}
            </h2>
            <div className="actions">
              <button type="button" onClick={() => shift(-1)}>
                ‹ Previous
              </button>
              <button type="button" onClick={() => setMonday(mondayOf(new Date()))}>
                This week
              </button>
              <button type="button" onClick={() => shift(1)}>
                Next ›
              </button>
            </div>
          </div>
          {loading && events.length === 0 && <p role="status">Loading bookings…</p>}
          {error != null && (
            <p role="alert" className="error">
              Could not load bookings: {explain(error)}
            </p>
          )}
          <ol className="week" aria-labelledby="week-title" data-testid="week">
            {days.map((d) => (
              <li key={d.key} className={d.key === todayKey ? "day today" : "day"} data-day={d.key}>
                <h3>
                  {day(d.day)}
                  {d.key === todayKey && <span className="visually-hidden"> (today)</span>}
                </h3>
                {d.events.length === 0 && d.unsent.length === 0 ? (
                  <p className="hint">Free</p>
                ) : (
                  <ul className="bookings">
                    {d.unsent.map(({ m, refused, record }) => (
                      <li
                        key={m.mutationId || record.id}
                        data-id={record.id}
                        className={refused ? "booking refused" : "booking pending"}
                        data-testid={refused ? "week-refused" : "week-queued"}
                      >
                        <div className="booking-time">{range(record)}</div>
                        <div className="booking-title">{text(record.fields.title) || "Booking"}</div>
                        <div className="hint">
                          {text(record.fields.resource)} · booked by you
                          {refused ? (
                            <span className="badge conflict">not booked</span>
                          ) : (
                            <span className="badge pending" title="Sent and checked for double bookings when you are back online">
                              not yet confirmed
                            </span>
                          )}
                        </div>
                        {refused && <RefusalNote m={m} onAnotherTime={() => setMoving({ id: record.id, refused: m })} />}
                      </li>
                    ))}
                    {d.events.map((e) => {
                      const cancelled = e.fields.status === "cancelled";
                      const isPending = pendingIds.has(e.id);
                      const view = isPending ? (crm.view("calendar_events", e.id) ?? e) : e;
                      return (
                        <li
                          key={e.id}
                          data-id={e.id}
                          className={["booking", cancelled && "cancelled", isPending && "pending"].filter(Boolean).join(" ")}
                        >
                          <div className="booking-time">{range(view)}</div>
                          <div className="booking-title">{text(view.fields.title) || "Booking"}</div>
                          <div className="hint">
                            {text(view.fields.resource)} · booked by {bookedBy(e)}
                            {e.updatedBy !== bookedBy(e) && ` · changed by ${e.updatedBy}`}
                            {cancelled && " · cancelled"}
                            {isPending && <span className="badge pending">not yet confirmed</span>}
                            {conflictIds.has(e.id) && (
                              <span className="badge conflict" title="Someone else changed this too: resolve the conflict">
                                conflict
                              </span>
                            )}
                          </div>
                          {!cancelled &&
                            (confirmCancel === e.id ? (
                              <div className="actions" role="group" aria-label="Confirm cancel">
                                <span>Cancel {whose(e, crm.user)}?</span>
                                <button type="button" className="danger" onClick={() => void cancel(e)}>
                                  Yes, cancel it
                                </button>
                                <button type="button" onClick={() => setConfirmCancel(null)}>
                                  Keep
                                </button>
                              </div>
                            ) : (
                              <div className="actions">
                                <button type="button" onClick={() => setMoving({ id: e.id })}>
                                  Move<span className="visually-hidden"> {text(e.fields.title)}</span>
                                </button>
                                <button type="button" onClick={() => setConfirmCancel(e.id)}>
                                  Cancel<span className="visually-hidden"> {text(e.fields.title)}</span>
                                </button>
                              </div>
                            ))}
                          {refusedChanges.has(e.id) && (
                            <RefusalNote
                              m={refusedChanges.get(e.id)!}
                              onAnotherTime={() => setMoving({ id: e.id, refused: refusedChanges.get(e.id) })}
                            />
                          )}
                          {rowNote?.id === e.id && (
                            <p role="status" className="hint">
                              {rowNote.text}
                            </p>
                          )}
                        </li>
                      );
                    })}
                  </ul>
                )}
              </li>
            ))}
          </ol>
        </div>
      </div>
      {movingEvent && <MoveDialog event={movingEvent} refused={moving?.refused} onClose={() => setMoving(null)} />}
    </section>
  );
}
