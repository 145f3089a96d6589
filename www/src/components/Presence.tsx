import type { PresencePerson } from "crm-sync";
import { usePresence } from "crm-sync/react";
import { fieldLabel, when } from "../lib";

function names(people: PresencePerson[]): string {
  const all = people.map((p) => p.user);
  if (all.length <= 1) return all.join("");
  return `${all.slice(0, -1).join(", ")} and ${all[all.length - 1]}`;
}

/** Small name tags of the other people who have a customer open (the list). */
export function PresenceTags({ id }: { id: string }) {
  const people = usePresence("customers", id);
  if (people.length === 0) return null;
  return (
    <span className="presence-tags" data-testid="row-presence" aria-label={`Open now by ${names(people)}`}>
      {people.map((p) => (
        <span
          key={p.user}
          className={p.editing ? "presence-tag editing" : "presence-tag"}
          title={p.editing ? `${p.user} is editing ${fieldLabel(p.editing)}` : `${p.user} has this customer open`}
        >
          {p.user}
        </span>
      ))}
    </span>
  );
}

/** "Also here: bob (editing City), carol" at the top of the customer dialog. */
export function PresenceBar({ id }: { id: string }) {
  const people = usePresence("customers", id);
  if (people.length === 0) return null;
  return (
    <p className="presence-bar" role="status" data-testid="presence-bar">
      <span className="presence-dot" aria-hidden="true" />
      Also here:{" "}
      {people.map((p, i) => (
        <span key={p.user} title={`Opened at ${when(p.since)}`}>
          {i > 0 && ", "}
          <strong>{p.user}</strong>
          {p.editing && ` (editing ${fieldLabel(p.editing)})`}
        </span>
      ))}
    </p>
  );
}

/** "bob is editing City" beside a field someone else has in focus. */
export function EditingHint({ id, field }: { id: string; field: string }) {
  const people = usePresence("customers", id).filter((p) => p.editing === field);
  if (people.length === 0) return null;
  return (
    // Seen beside the field's name, but not part of it: the field keeps its
    // name for a screen reader (the bar above the form says who edits what).
    <span className="editing-hint" data-testid="field-presence" data-field={field} aria-hidden="true">
      {names(people)} {people.length === 1 ? "is" : "are"} editing {fieldLabel(field)}
    </span>
  );
}
