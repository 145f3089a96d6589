import { createContext, useContext, useSyncExternalStore } from "react";
import type { CrmEvent, CrmSync, FieldValue, Fields } from "crm-sync";
import { fieldLabel, fieldValue, kindOf, text } from "./lib";

/**
 * Tells the person whose value lost who kept what, and what theirs was.
 *
 * The module raises a `record` event (origin "server") when someone else's
 * change arrives. This tab remembers the values it saved itself, with the
 * version each save made; when a later version replaces one of them, the
 * person hears "bob kept 'Graz' for City (yours was 'Linz')" instead of
 * silently seeing another value, and can put theirs back ("Use mine": a new
 * versioned save on top, which can itself conflict). A notice belongs to the
 * saves it names: a later save of other fields is not "replaced" by it.
 */
export interface KeptNotice {
  key: string;
  collection: string;
  recordId: string;
  recordName: string;
  /** Who kept their value, and the version that did it. */
  by: string;
  version: number;
  /** Each field whose value lost: this person's and the one kept. */
  lost: { field: string; mine: FieldValue; theirs: FieldValue }[];
  text: string;
}

type Saved = Map<string, { value: FieldValue; version: number; at: number }>;

/** How long a saved value is watched: a later change is no longer "the other side". */
const WATCH_MS = 30 * 60 * 1000;

export class KeptNotices {
  private saved = new Map<string, Saved>();
  private notices: KeptNotice[] = [];
  private listeners = new Set<() => void>();

  constructor(private readonly crm: CrmSync) {}

  /**
   * This tab's save of these fields was confirmed by the server as
   * `version`. A notice about these fields from before is answered by it.
   */
  remember(collection: string, id: string, fields: Record<string, FieldValue>, version: number) {
    const key = `${collection}/${id}`;
    const mine = this.saved.get(key) ?? new Map();
    const at = Date.now();
    for (const [f, v] of Object.entries(fields)) {
      const before = mine.get(f);
      // Saves settle out of order: the later version stands.
      if (!before || before.version <= version) mine.set(f, { value: v ?? null, version, at });
    }
    this.saved.set(key, mine);
    const answered = this.notices.filter(
      (n) => n.collection === collection && n.recordId === id && n.version <= version && n.lost.every((l) => l.field in fields),
    );
    if (answered.length > 0) {
      this.notices = this.notices.filter((n) => !answered.includes(n));
      this.emit();
    }
  }

  /**
   * The notices that concern a save of `fields` that the server confirmed
   * as `version`: only a later version replacing one of those fields.
   */
  replacing(collection: string, id: string, fields: string[], version: number): KeptNotice[] {
    return this.notices.filter(
      (n) =>
        n.collection === collection &&
        n.recordId === id &&
        n.version > version &&
        n.lost.some((l) => fields.includes(l.field)),
    );
  }

  /**
   * Puts this person's values of a notice back: one save of those fields on
   * the version the client has now (the one that replaced them), sent like
   * any save. Resolves with the save's result (a conflict goes to the
   * conflict dialog as every conflict does).
   */
  async useMine(notice: KeptNotice) {
    const fields: Fields = Object.fromEntries(notice.lost.map((l) => [l.field, l.mine]));
    const result = await this.crm.save(notice.collection, notice.recordId, fields);
    if (result.status === "committed" || result.status === "merged") {
      this.remember(notice.collection, notice.recordId, fields, result.record.version);
    }
    this.dismiss(notice.key);
    return result;
  }

  /** Feeds one client event; returns the unsubscribe of `crm.subscribe`. */
  listen(): () => void {
    return this.crm.subscribe((event: CrmEvent) => {
      if (event.type !== "record" || !event.record) return;
      const key = `${event.collection}/${event.id}`;
      const mine = this.saved.get(key);
      if (!mine) return;
      const record = event.record;
      if (event.origin === "local" || record.updatedBy === this.crm.user) {
        // Our own newer save: it becomes what we stand for.
        return;
      }
      const now = Date.now();
      const lost: KeptNotice["lost"] = [];
      for (const [field, { value, version, at }] of mine) {
        if (now - at > WATCH_MS) {
          mine.delete(field);
          continue;
        }
        // Only a version after our save can have replaced it.
        if (record.version <= version) continue;
        const theirs = record.fields[field] ?? null;
        if (text(theirs) !== text(value)) {
          lost.push({ field, mine: value, theirs });
          mine.delete(field);
        }
      }
      if (mine.size === 0) this.saved.delete(key);
      if (lost.length === 0) return;
      const recordName = text(record.fields.name ?? record.fields.title) || kindOf(event.collection);
      const said = lost
        .map(
          (l) =>
            `${record.updatedBy} kept “${fieldValue(l.field, l.theirs)}” for ${fieldLabel(l.field)} (yours was “${fieldValue(l.field, l.mine)}”)`,
        )
        .join("; ");
      this.notices = [
        ...this.notices,
        {
          key: `${key}@${record.version}`,
          collection: event.collection,
          recordId: event.id,
          recordName,
          by: record.updatedBy,
          version: record.version,
          lost,
          text: `${said}.`,
        },
      ];
      this.emit();
    });
  }

  dismiss(key: string) {
    this.notices = this.notices.filter((n) => n.key !== key);
    this.emit();
  }

  readonly subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  readonly snapshot = () => this.notices;

  private emit() {
    for (const l of this.listeners) l();
  }
}

export const KeptContext = createContext<KeptNotices | null>(null);

/** The notices of the nearest Shell, re-rendering when they change. */
export function useKeptNotices(): { store: KeptNotices | null; notices: KeptNotice[] } {
  const store = useContext(KeptContext);
  const notices = useSyncExternalStore(store?.subscribe ?? noSubscription, store?.snapshot ?? noNotices);
  return { store, notices };
}

const noSubscription = () => () => {};
const none: KeptNotice[] = [];
const noNotices = () => none;
