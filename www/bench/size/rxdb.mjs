// RxDB 17, as its quickstart sets it up, with the pieces a synced CRM
// needs: the Dexie (IndexedDB) storage, the leader election plugin (one
// tab replicates) and the replication plugin with push and pull handlers
// over HTTP, plus an insert and an observed query.
import { addRxPlugin, createRxDatabase } from "rxdb/plugins/core";
import { getRxStorageDexie } from "rxdb/plugins/storage-dexie";
import { RxDBLeaderElectionPlugin } from "rxdb/plugins/leader-election";
import { replicateRxCollection } from "rxdb/plugins/replication";

addRxPlugin(RxDBLeaderElectionPlugin);

export async function demo(render) {
  const db = await createRxDatabase({ name: "crm", storage: getRxStorageDexie() });
  await db.addCollections({
    customers: {
      schema: {
        version: 0,
        primaryKey: "id",
        type: "object",
        properties: {
          id: { type: "string", maxLength: 100 },
          name: { type: "string" },
          status: { type: "string" },
          updatedAt: { type: "number" },
        },
        required: ["id", "name"],
      },
    },
  });
  const replication = replicateRxCollection({
    collection: db.customers,
    replicationIdentifier: "crm-http",
    live: true,
    push: {
      async handler(changes) {
        const res = await fetch("/api/rxdb/push", { method: "POST", body: JSON.stringify(changes) });
        return res.json();
      },
    },
    pull: {
      async handler(checkpoint, batchSize) {
        const res = await fetch(`/api/rxdb/pull?since=${checkpoint?.updatedAt ?? 0}&limit=${batchSize}`);
        return res.json();
      },
    },
  });
  await db.customers.insert({ id: "c-1", name: "Acme Ltd", status: "lead", updatedAt: Date.now() });
  db.customers.find({ selector: { status: "lead" } }).$.subscribe(render);
  return replication;
}
