import type { ReactNode } from "react";

/**
 * A table that scrolls sideways on small screens: its region can be focused
 * and scrolled by keyboard, and says so to a screen reader. `label` names the
 * table, `region` the scrolling region (the table's name unless given);
 * `columns` are the header cells, `children` the body rows.
 */
export function WideTable({
  label,
  region = label,
  className = "history",
  columns,
  children,
}: {
  label: string;
  region?: string;
  className?: string;
  columns: ReactNode[];
  children: ReactNode;
}) {
  return (
    <div className="scroll-x" tabIndex={0} role="region" aria-label={`${region}, scrolls sideways on small screens`}>
      <table aria-label={label} className={className}>
        <thead>
          <tr>
            {columns.map((c, i) => (
              <th scope="col" key={i}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
