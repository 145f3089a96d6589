import { useState } from "react";
import { useKeptNotices, type KeptNotice } from "../kept";
import { plain } from "../lib";

/**
 * "Use mine" for a value that lost: saves this person's value again on top
 * of the one kept (a conflict then goes to the conflict dialog); says why if
 * it could not be sent.
 */
export function UseMine({ notice }: { notice: KeptNotice }) {
  const { store } = useKeptNotices();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  if (!store) return null;
  async function use() {
    setBusy(true);
    setProblem(null);
    try {
      await store!.useMine(notice);
    } catch (e) {
      setProblem(`Not saved: ${plain(e)}`);
      setBusy(false);
    }
  }
  return (
    <>
      <button type="button" disabled={busy} onClick={() => void use()}>
        Use mine
      </button>
      {problem && <span className="error">{problem}</span>}
    </>
  );
}
