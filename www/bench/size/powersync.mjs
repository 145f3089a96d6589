// PowerSync web 2.4, as its getting started sets it up: a schema, a
// PowerSyncDatabase (SQLite in a worker, IndexedDB underneath by default),
// a backend connector for credentials and uploads, connect, a write and a
// watched query. The worker and the wa-sqlite wasm it loads are counted
// beside this bundle (see www/bench/size.mjs).
import { column, PowerSyncDatabase, Schema, Table } from "@powersync/web";

const customers = new Table({ name: column.text, status: column.text, owner: column.text });
const AppSchema = new Schema({ customers });

export const db = new PowerSyncDatabase({ schema: AppSchema, database: { dbFilename: "crm.db" } });

const connector = {
  async fetchCredentials() {
    return { endpoint: "/powersync", token: "" };
  },
  async uploadData(database) {
    const tx = await database.getNextCrudTransaction();
    if (!tx) return;
    await fetch("/api/upload", { method: "POST", body: JSON.stringify(tx.crud.map((op) => op.toJSON())) });
    await tx.complete();
  },
};

export async function demo(render) {
  await db.connect(connector);
  await db.execute("INSERT INTO customers (id, name, status, owner) VALUES (uuid(), ?, ?, ?)", ["Acme Ltd", "lead", "alice"]);
  for await (const result of db.watch("SELECT * FROM customers WHERE status = ?", ["lead"])) render(result.rows?._array);
}
