// Replicache 15, as its getting started uses it: a client with named
// mutators, push and pull endpoints, a subscription, and a mutation.
import { Replicache } from "replicache";

export const rep = new Replicache({
  name: "alice",
  pushURL: "/api/replicache/push",
  pullURL: "/api/replicache/pull",
  mutators: {
    async saveCustomer(tx, customer) {
      await tx.set(`customer/${customer.id}`, customer);
    },
  },
});

export function demo(render) {
  rep.subscribe(async (tx) => (await tx.scan({ prefix: "customer/" }).values().toArray()), { onData: render });
  return rep.mutate.saveCustomer({ id: "c-1", name: "Acme Ltd", status: "lead" });
}
