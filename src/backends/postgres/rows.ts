/**
 * What one statement gives back, and the limits that hold while its rows arrive: at most `maxRows`
 * per statement and `maxResultBytes` of JSON per call, counted before a row is kept, so rows past
 * the limits cost nothing.
 */
import { TYPE_NAMES } from "./codec.ts";

export interface Field {
  readonly name: string;
  readonly dataTypeID: number;
  readonly type?: string;
}

export interface StatementResult {
  /** The command tag's verb ("SELECT", "INSERT"…); null when the result was cut before it came. */
  readonly command: string | null;
  /** Rows returned or changed, as PostgreSQL counted them; null when it had not finished counting. */
  readonly rowCount: number | null;
  readonly fields: readonly Field[];
  readonly rows: readonly Record<string, unknown>[];
  readonly truncated: boolean;
}

/** What a driver hands back for one statement; the rows went to the collector. */
export interface StatementOutcome {
  readonly command: string | null;
  readonly rowCount: number | null;
  /** The server had more rows than the collector asked for. */
  readonly more: boolean;
}

/** Bytes of rows a call may still return, shared by every statement of the call. */
export interface RowBudget {
  bytesLeft: number;
}

/**
 * Keeps rows up to a row limit and a byte budget shared by every statement of a call. Drivers ask
 * `accepting` before decoding a row, so rows past the limits cost nothing.
 */
export class RowCollector {
  readonly rows: Record<string, unknown>[] = [];
  fields: Field[] = [];
  cut: "rows" | "bytes" | undefined;
  #keys: string[] = [];
  readonly #maxRows: number;
  readonly #budget: RowBudget;

  constructor(maxRows: number, budget: RowBudget) {
    this.#maxRows = maxRows;
    this.#budget = budget;
  }

  /** The server's row limit: one more than kept, so that a cut is known for certain. */
  get fetchLimit(): number {
    return this.#maxRows + 1;
  }

  get accepting(): boolean {
    return this.cut === undefined;
  }

  setFields(fields: readonly { name: string; dataTypeID: number }[]): void {
    const seen = new Map<string, number>();
    this.fields = fields.map((field) => {
      // Duplicate column names ("SELECT 1 AS a, 2 AS a") would overwrite each other in a row object.
      const count = (seen.get(field.name) ?? 0) + 1;
      seen.set(field.name, count);
      const name = count === 1 ? field.name : `${field.name}_${count}`;
      const type = TYPE_NAMES[field.dataTypeID];
      return type === undefined
        ? { name, dataTypeID: field.dataTypeID }
        : { name, dataTypeID: field.dataTypeID, type };
    });
    this.#keys = this.fields.map((field) => field.name);
  }

  add(values: readonly unknown[]): void {
    if (this.cut !== undefined) return;
    if (this.rows.length >= this.#maxRows) {
      this.cut = "rows";
      return;
    }
    const row: Record<string, unknown> = {};
    for (let i = 0; i < this.#keys.length; i++) row[this.#keys[i] as string] = values[i] ?? null;
    const bytes = Buffer.byteLength(JSON.stringify(row), "utf8") + 1;
    if (bytes > this.#budget.bytesLeft) {
      this.cut = "bytes";
      return;
    }
    this.#budget.bytesLeft -= bytes;
    this.rows.push(row);
  }

  result(outcome: StatementOutcome): StatementResult {
    if (outcome.more && this.cut === undefined) this.cut = "rows";
    return {
      command: outcome.command,
      rowCount: outcome.rowCount,
      fields: this.fields,
      rows: this.rows,
      truncated: this.cut !== undefined,
    };
  }
}

/** "INSERT 0 3" -> INSERT, 3; "CREATE TABLE" -> CREATE TABLE, null. */
export function parseCommandTag(tag: string): { command: string; rowCount: number | null } {
  const match = /^(.*?)((?: \d+)+)?$/.exec(tag);
  const numbers = match?.[2]?.trim().split(" ") ?? [];
  const last = numbers.at(-1);
  return { command: match?.[1] ?? tag, rowCount: last === undefined ? null : Number(last) };
}
