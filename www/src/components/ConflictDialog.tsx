import { useState } from "react";
import type { Conflict, FieldValue, Fields } from "crm-sync";
import { useCrm } from "crm-sync/react";
import { CUSTOMER_STATUSES, fieldLabel, fieldValue, isTimeField, kindOf, plain, recordName, text } from "../lib";
import { Dialog } from "./Dialog";
import { WideTable } from "./WideTable";

type Choice = "mine" | "theirs" | "edit";

/**
 * One conflict: per field both sides changed, the value it was based on
 * (base), this user's (mine) and the server's (theirs); the person keeps one
 * or types a third, and `crm.resolve` sends that on the server's version.
 */
export function ConflictDialog({ conflict, onLater }: { conflict: Conflict; onLater: () => void }) {
  const crm = useCrm();
  const [choices, setChoices] = useState<Record<string, Choice>>({});
  const [edits, setEdits] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const theirs = conflict.theirs?.fields ?? {};
  const base = conflict.base?.fields ?? {};
  const alsoMine = Object.keys(conflict.mine).filter((f) => !conflict.fields.includes(f));
  const name = recordName(conflict.collection, { ...base, ...theirs });
  const show = (field: string, value: FieldValue | undefined) => fieldValue(field, value);

  async function resolve(fields: Fields) {
    setBusy(true);
    setError(null);
    try {
      await crm.resolve(conflict.id, fields);
    } catch (e) {
      setError(`Not resolved: ${plain(e)}`);
      setBusy(false);
    }
  }

  function chosen(): Fields {
    const out: Fields = {};
    for (const f of conflict.fields) {
      const choice = choices[f] ?? "mine";
      out[f] =
        choice === "mine"
          ? (conflict.mine[f] ?? null)
          : choice === "theirs"
            ? (theirs[f] ?? null)
            : (edits[f] ?? text(conflict.mine[f])) || null;
    }
    return out;
  }

  const all = (side: "mine" | "theirs"): Fields =>
    Object.fromEntries(
      conflict.fields.map((f) => [f, side === "mine" ? (conflict.mine[f] ?? null) : (theirs[f] ?? null)]),
    );

  return (
    <Dialog title={`Conflict: ${name}`} onClose={onLater} className="conflict-dialog">
      <p>
        {conflict.theirs?.updatedBy ?? "Someone"} changed this {kindOf(conflict.collection)} while you were editing
        it. Choose what to keep for each field.
      </p>
      <WideTable
        label="Conflicting fields"
        className="conflict-table"
        columns={["Field", "Base", "Mine", "Theirs", "Keep"]}
      >
        {conflict.fields.map((f) => {
          const choice = choices[f] ?? "mine";
          const set = (c: Choice) => setChoices((cs) => ({ ...cs, [f]: c }));
          return (
            <tr key={f} data-field={f}>
              <th scope="row">{fieldLabel(f)}</th>
              <td>{show(f, base[f])}</td>
              <td className="mine">{show(f, conflict.mine[f])}</td>
              <td className="theirs">{show(f, theirs[f])}</td>
              <td>
                <fieldset className="choice">
                  <legend className="visually-hidden">Keep for {fieldLabel(f)}</legend>
                  <label>
                    <input type="radio" name={`keep-${f}`} checked={choice === "mine"} onChange={() => set("mine")} />
                    mine
                  </label>
                  <label>
                    <input type="radio" name={`keep-${f}`} checked={choice === "theirs"} onChange={() => set("theirs")} />
                    theirs
                  </label>
                  {/* A time is not typed into a cell: keep one side, or move the booking after. */}
                  {!isTimeField(f) && (
                    <label>
                      <input type="radio" name={`keep-${f}`} checked={choice === "edit"} onChange={() => set("edit")} />
                      edit
                    </label>
                  )}
                  {choice === "edit" &&
                    (f === "status" ? (
                      <select
                        aria-label={`New value for ${fieldLabel(f)}`}
                        value={edits[f] ?? text(conflict.mine[f])}
                        onChange={(e) => setEdits((es) => ({ ...es, [f]: e.target.value }))}
                      >
                        {CUSTOMER_STATUSES.map((s) => (
                          <option key={s}>{s}</option>
                        ))}
                      </select>
                    ) : (
                      <input
                        aria-label={`New value for ${fieldLabel(f)}`}
                        value={edits[f] ?? text(conflict.mine[f])}
                        onChange={(e) => setEdits((es) => ({ ...es, [f]: e.target.value }))}
                      />
                    ))}
                </fieldset>
              </td>
            </tr>
          );
        })}
      </WideTable>
      {alsoMine.length > 0 && <p className="hint">Your changes to {alsoMine.map(fieldLabel).join(", ")} are kept as well.</p>}
      <div className="actions">
        <button type="button" disabled={busy} onClick={() => resolve(all("mine"))}>
          Keep mine
        </button>
        <button type="button" disabled={busy} onClick={() => resolve(all("theirs"))}>
          Keep theirs
        </button>
        <button type="button" className="primary" disabled={busy} onClick={() => resolve(chosen())}>
          Apply choices
        </button>
        <button type="button" disabled={busy} onClick={onLater}>
          Decide later
        </button>
      </div>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </Dialog>
  );
}
