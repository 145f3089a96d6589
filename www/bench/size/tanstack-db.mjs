// TanStack DB 0.15 with offline-transactions 1.0, as their docs set them
// up: a collection persisted in IndexedDB, a live query over it, and the
// offline executor (outbox in IndexedDB, retries, leader election between
// tabs) committing a mutation through a mutation function that posts it.
import { createCollection, createIndexedDB, createLiveQueryCollection, eq, indexedDBCollectionOptions } from "@tanstack/db";
import { startOfflineExecutor } from "@tanstack/offline-transactions";

export async function demo() {
  const idb = await createIndexedDB({ name: "crm", version: 1, stores: ["customers"] });
  const customers = createCollection(
    indexedDBCollectionOptions({ db: idb, name: "customers", getKey: (c) => c.id }),
  );
  const leads = createLiveQueryCollection((q) =>
    q.from({ c: customers }).where(({ c }) => eq(c.status, "lead")),
  );
  const offline = startOfflineExecutor({
    collections: { customers },
    mutationFns: {
      async saveCustomers({ transaction, idempotencyKey }) {
        await fetch("/api/customers/batch", {
          method: "POST",
          headers: { "idempotency-key": idempotencyKey },
          body: JSON.stringify(transaction.mutations.map((m) => m.modified)),
        });
      },
    },
  });
  const tx = offline.createOfflineTransaction({ mutationFnName: "saveCustomers", autoCommit: false });
  tx.mutate(() => customers.insert({ id: "c-1", name: "Acme Ltd", status: "lead" }));
  await tx.commit();
  return leads.toArrayWhenReady();
}
