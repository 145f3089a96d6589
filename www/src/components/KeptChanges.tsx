import { useState } from "react";
import { useCrm, useCrmStatus } from "crm-sync/react";

/**
 * Whether this browser keeps changes made offline from its own clean-up
 * (`status.durable`), with a button that asks it to (`crm.persist()`, from
 * the click: Firefox asks the person). Warns while changes are waiting and
 * the browser may still clear them.
 */
export function KeptChanges() {
  const crm = useCrm();
  const status = useCrmStatus();
  const [asking, setAsking] = useState(false);
  const [refused, setRefused] = useState(false);

  async function ask() {
    setAsking(true);
    setRefused(false);
    try {
      setRefused(!(await crm.persist()));
    } finally {
      setAsking(false);
    }
  }

  const waiting = status.pending;
  return (
    <section className="panel" aria-labelledby="kept-title" data-testid="kept-changes">
      <h2 id="kept-title">Changes made offline</h2>
      {status.storage !== "indexeddb" ? (
        <p data-testid="kept-state">
          This browser window keeps nothing after it closes (a private window, or storage is blocked): changes made
          offline are lost if it closes before they are sent.
        </p>
      ) : status.durable ? (
        <p data-testid="kept-state" data-durable="true">
          Safe: this browser keeps changes made offline on this device until they are sent.
        </p>
      ) : (
        <>
          <p data-testid="kept-state" data-durable="false">
            Not yet safe: this browser may clear changes made offline when the device runs low on space, and Safari
            does after a week without a visit.
          </p>
          {waiting > 0 && (
            <p role="alert" className="warning" data-testid="kept-warning">
              {waiting === 1 ? "1 change is" : `${waiting} changes are`} waiting to be sent and could be lost. Keep
              them on this device, or go online to send them.
            </p>
          )}
          <div className="actions">
            <button type="button" className="primary" onClick={ask} disabled={asking}>
              Keep changes on this device
            </button>
          </div>
          {refused && (
            <p className="hint" data-testid="kept-refused">
              The browser said no for now. Browsers decide from how a site is used; installing this app or
              bookmarking it helps, and you can ask again later.
            </p>
          )}
        </>
      )}
    </section>
  );
}
