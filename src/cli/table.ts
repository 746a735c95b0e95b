/** A plain-text table for terminals: columns padded to the widest cell, a rule under the header. */
export function formatTable(rows: readonly Record<string, string>[]): string {
  if (rows.length === 0) return "(none)";
  const columns = Object.keys(rows[0] as Record<string, string>);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [
    line(columns),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map((r) => line(columns.map((c) => r[c] ?? ""))),
  ].join("\n");
}
