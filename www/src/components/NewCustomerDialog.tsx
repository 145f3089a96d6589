import { useState, type FormEvent } from "react";
import type { Fields } from "crm-sync";
import { useCrm } from "crm-sync/react";
import { CUSTOMER_STATUSES, looksLikeEmail, plain } from "../lib";
import { Dialog } from "./Dialog";

/** Adds a customer through `crm.create` (staged like any save; queued offline). */
export function NewCustomerDialog({ onClose, onCreated }: { onClose: () => void; onCreated: (note: string) => void }) {
  const crm = useCrm();
  const [form, setForm] = useState({ name: "", email: "", phone: "", city: "", status: "lead" });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const name = form.name.trim();
    if (!name) return setError("A customer needs a name.");
    if (form.email && !looksLikeEmail(form.email)) return setError(`Email “${form.email}” is not an address.`);
    const fields: Fields = { name, status: form.status, owner: crm.user };
    for (const key of ["email", "phone", "city"] as const) if (form[key].trim()) fields[key] = form[key].trim();
    setBusy(true);
    setError(null);
    try {
      const result = await crm.create("customers", fields);
      onCreated(
        result.status === "queued" ? `Offline: “${name}” is queued and added when you are back online.` : `Added “${name}”.`,
      );
    } catch (err) {
      setError(`Not added: ${plain(err)}`);
      setBusy(false);
    }
  }

  const set = (key: keyof typeof form) => (e: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [key]: e.target.value }));

  return (
    <Dialog title="New customer" onClose={onClose} className="sheet">
      <form className="fields" onSubmit={submit} aria-label="New customer">
        <label>
          Name
          <input name="name" value={form.name} onChange={set("name")} required />
        </label>
        <label>
          Email
          <input name="email" type="email" value={form.email} onChange={set("email")} />
        </label>
        <label>
          Phone
          <input name="phone" type="tel" value={form.phone} onChange={set("phone")} />
        </label>
        <label>
          City
          <input name="city" value={form.city} onChange={set("city")} />
        </label>
        <label>
          Status
          <select name="status" value={form.status} onChange={set("status")}>
            {CUSTOMER_STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <div className="actions span-all">
          <button type="submit" className="primary" disabled={busy}>
            Add customer
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
        {error && (
          <p role="alert" className="error span-all">
            {error}
          </p>
        )}
      </form>
    </Dialog>
  );
}
