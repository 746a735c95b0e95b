/**
 * The messages between the gateway and the worker thread its embedded PostgreSQL (PGlite) runs in
 * (pglite-worker.ts). Values cross as PostgreSQL's text, decoded on the gateway's side (codec.ts), so
 * both drivers decode alike and no function has to cross the thread boundary.
 */

/** How the worker opens its database: `workerData`. */
export interface EmbeddedOpenOptions {
  /** Where PGlite keeps its files; undefined: in memory. */
  readonly dataDir?: string | undefined;
  /** Load the sample schema into a database that has no tables of its own. */
  readonly sampleData: boolean;
  /** Serve an in-memory copy of `dataDir`, so that no SQL can write to the folder. */
  readonly readOnly: boolean;
}

export type EmbeddedRequest =
  /** One statement through the extended protocol; at most `limit` rows come back. */
  | {
      readonly id: number;
      readonly op: "query";
      readonly sql: string;
      readonly params: readonly (string | null)[];
      readonly limit: number;
    }
  /** Statements of the gateway's own (simple protocol, several allowed). */
  | { readonly id: number; readonly op: "exec"; readonly sql: string }
  /** Closes the database cleanly; the worker is ended once it answers. */
  | { readonly id: number; readonly op: "close" };

export interface EmbeddedRows {
  readonly fields: readonly { readonly name: string; readonly dataTypeID: number }[];
  /** Up to the request's `limit` rows, each value in PostgreSQL's text form. */
  readonly rows: readonly (readonly (string | null)[])[];
  /** How many rows the statement produced, sent or not. */
  readonly total: number;
  readonly command: string | null;
  readonly rowCount: number | null;
}

/** An error as it crosses the thread: PostgreSQL's ErrorResponse fields, where it was one. */
export interface EmbeddedError {
  readonly message: string;
  readonly code?: string;
  readonly severity?: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly position?: string;
}

export type EmbeddedAnswer = { readonly id: number; readonly inTransaction: boolean } & (
  | { readonly ok: true; readonly rows?: EmbeddedRows }
  | { readonly ok: false; readonly error: EmbeddedError }
);

/** The worker's first message: its database is open, or could not be opened. */
export type EmbeddedStarted =
  | { readonly type: "ready"; readonly loadedSampleData: boolean }
  | { readonly type: "failed"; readonly error: EmbeddedError };
