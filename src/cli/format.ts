/** Human output: aligned tables and short times. Pure functions, no I/O. */

/** Columns padded to the widest cell; the last column is not padded. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

/** "3h 12m", "45s", "2d 4h": the two largest units. */
export function span(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  const units: [string, number][] = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ];
  const parts: string[] = [];
  let left = s;
  for (const [u, n] of units) {
    if (left >= n || (u === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(left / n)}${u}`);
      left %= n;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/** "2026-11-28 15:00:00Z (in 3h 12m)" or "(5m ago)"; "-" for null. */
export function when(iso: unknown, now = Date.now()): string {
  if (typeof iso !== "string" && typeof iso !== "number") return "-";
  const t = typeof iso === "number" ? iso : Date.parse(iso);
  if (!Number.isFinite(t)) return String(iso);
  const text = new Date(t)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d{3}Z$/, "Z");
  const d = t - now;
  return `${text} (${d >= 0 ? `in ${span(d)}` : `${span(d)} ago`})`;
}

export const str = (v: unknown): string =>
  v === null || v === undefined ? "-" : typeof v === "string" ? v : typeof v === "object" ? JSON.stringify(v) : String(v);
