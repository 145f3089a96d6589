import { createContext, useContext, useSyncExternalStore } from "react";
import type { CrmEvent, CrmSync, FieldValue } from "crm-sync";
import { fieldLabel, text } from "./lib";

/**
 * Tells the person whose value lost a conflict who kept what.
 *
 * The module raises a `record` event (origin "server") when someone else's
 * change arrives. This tab remembers the values it saved itself; when such a
 * change replaces one of them, the person hears "bob kept 'Graz' for City"
 * instead of silently seeing another value.
 */
export interface KeptNotice {
  key: string;
  collection: string;
  recordId: string;
  recordName: string;
  text: string;
}

type Saved = Map<string, { value: FieldValue; at: number }>;

/** How long a saved value is watched: a later change is no longer "the other side". */
const WATCH_MS = 30 * 60 * 1000;

export class KeptNotices {
  private saved = new Map<string, Saved>();
  private notices: KeptNotice[] = [];
  private listeners = new Set<() => void>();

  constructor(private readonly crm: CrmSync) {}

  /** This tab's save of these fields was confirmed by the server. */
  remember(collection: string, id: string, fields: Record<string, FieldValue>) {
    const key = `${collection}/${id}`;
    const mine = this.saved.get(key) ?? new Map();
    const at = Date.now();
    for (const [f, v] of Object.entries(fields)) mine.set(f, { value: v ?? null, at });
    this.saved.set(key, mine);
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
      const lost: string[] = [];
      for (const [field, { value, at }] of mine) {
        if (now - at > WATCH_MS) {
          mine.delete(field);
          continue;
        }
        const theirs = record.fields[field] ?? null;
        if (text(theirs) !== text(value)) {
          lost.push(`${record.updatedBy} kept “${text(theirs) || "(empty)"}” for ${fieldLabel(field)}`);
          mine.delete(field);
        }
      }
      if (mine.size === 0) this.saved.delete(key);
      if (lost.length === 0) return;
      const recordName = text(record.fields.name ?? record.fields.title) || event.id;
      this.notices = [
        ...this.notices,
        {
          key: `${key}@${record.version}`,
          collection: event.collection,
          recordId: event.id,
          recordName,
          text: `${lost.join("; ")} (instead of yours).`,
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
