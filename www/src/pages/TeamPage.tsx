import { useQuery } from "crm-sync/react";
import { text, when } from "../lib";
import { useLoad } from "../useLoad";
import { ActivityPlot, percent, useServerFigures } from "./ServerPage";
import { WideTable } from "../components/WideTable";

/** Customers shown under "Recently changed". */
const RECENT = 10;

/**
 * Team activity, in the words of a sales team: changes saved, people
 * changing the same thing at once, who is online, spreadsheet syncs, and
 * which customers were changed last and by whom. The server's HTTP figures
 * are on their own page (Server health), for whoever runs it.
 */
export function TeamPage() {
  const { figures, error, plotted } = useServerFigures();
  useLoad("customers");
  const { items: recent } = useQuery("customers", { orderBy: ["updatedAt", "desc"], limit: RECENT });
  const jobs = figures?.syncJobs;
  return (
    <section aria-labelledby="team-title">
      <h1 id="team-title">Team activity</h1>
      {error && (
        <p role="alert" className="error">
          The team's figures cannot be read just now. They come back by themselves.
        </p>
      )}
      {!figures ? (
        !error && <p className="hint">Reading the team's figures…</p>
      ) : (
        <>
          <section className="panel" aria-labelledby="team-now">
            <h2 id="team-now">Since the server started</h2>
            <dl className="facts figures">
              <div>
                <dt>Changes saved</dt>
                <dd data-testid="figure-commits">{figures.commits}</dd>
              </div>
              <div>
                <dt>Two people changing the same thing at once</dt>
                <dd data-testid="figure-conflicts">
                  {figures.conflicts} ({percent(figures.conflictRate)} of changes)
                </dd>
              </div>
              <div>
                <dt>People connected now</dt>
                <dd data-testid="figure-streams">{figures.eventStreams}</dd>
              </div>
              <div>
                <dt>Spreadsheet syncs done / failed</dt>
                <dd data-testid="figure-jobs-done">
                  {jobs!.completed} / {jobs!.failed}
                </dd>
              </div>
              <div>
                <dt>Spreadsheet syncs waiting / running</dt>
                <dd data-testid="figure-jobs-now">
                  {jobs!.queued} / {jobs!.running}
                </dd>
              </div>
            </dl>
            {Object.keys(jobs!.queuedPerUser).length > 0 && (
              <p className="hint">
                Waiting to sync:{" "}
                {Object.entries(jobs!.queuedPerUser)
                  .map(([user, n]) => `${user} (${n})`)
                  .join(", ")}
              </p>
            )}
          </section>
          <section className="panel" aria-labelledby="team-plot">
            <h2 id="team-plot">Last minutes</h2>
            <ActivityPlot plotted={plotted} main="commits" words="Changes" />
          </section>
        </>
      )}
      <section className="panel" aria-labelledby="team-recent">
        <h2 id="team-recent">Recently changed customers</h2>
        {recent.length === 0 ? (
          <p className="hint">No customers yet.</p>
        ) : (
          <WideTable
            label="Recently changed customers"
            columns={["Customer", "Changed by", "When"]}
          >
            {recent.map((r) => (
              <tr key={r.id} data-id={r.id}>
                <td>{text(r.fields.name) || "a customer"}</td>
                <td>{r.updatedBy}</td>
                <td>{when(r.updatedAt)}</td>
              </tr>
            ))}
          </WideTable>
        )}
      </section>
      <p className="hint">
        For whoever runs the server: <a href="#/server">Server health</a>.
      </p>
    </section>
  );
}
