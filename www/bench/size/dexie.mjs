// Dexie 4, as its getting started uses it: one database, a table with its
// indexes declared, writes and a query.
import Dexie from "dexie";

export const db = new Dexie("crm");
db.version(1).stores({ customers: "id, status, owner" });

export async function demo() {
  await db.customers.put({ id: "c-1", name: "Acme Ltd", status: "lead", owner: "alice" });
  await db.customers.bulkPut([{ id: "c-2", name: "Globex", status: "customer", owner: "bob" }]);
  return db.customers.where("status").equals("lead").toArray();
}
