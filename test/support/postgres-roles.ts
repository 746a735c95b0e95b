/**
 * Least-privileged PostgreSQL roles for tests. A read-only database backend refuses to serve as a
 * superuser (or any role that can reach the database host), so tests of other things connect as a
 * role of their own: one that can read every table (pg_read_all_data) and, when a test asks, do a
 * little more (write the tables of its schema).
 *
 * Roles belong to the whole server, which other test files share, so each run names its own
 * (uniqueName) and drops it when done.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { uniqueName } from "./services.ts";

export interface TestRole {
  readonly name: string;
  readonly password: string;
  /** `adminUrl` with this role and its password in place of the admin's. */
  readonly url: string;
  /** Drops what the role owns and was granted in this database, then the role. */
  drop(): Promise<void>;
}

/**
 * Creates a LOGIN role that can read every table, plus whatever `grants` (SQL, with the role's
 * name passed in) gives it.
 */
export async function createTestRole(
  adminUrl: string,
  label: string,
  grants: (role: string) => string = () => "",
): Promise<TestRole> {
  const name = uniqueName(label);
  const password = `pw_${randomBytes(8).toString("hex")}`;
  await withAdmin(adminUrl, (admin) =>
    admin.query(
      `CREATE ROLE ${name} LOGIN PASSWORD '${password}'; GRANT pg_read_all_data TO ${name}; ${grants(name)}`,
    ),
  );
  const url = new URL(adminUrl);
  url.username = name;
  url.password = password;
  return {
    name,
    password,
    url: url.toString(),
    drop: () =>
      withAdmin(adminUrl, async (admin) => {
        // Its sessions may outlive the test by a moment (a pool closing); they do not stop a DROP ROLE.
        await admin.query(`DROP OWNED BY ${name}; DROP ROLE IF EXISTS ${name}`);
      }),
  };
}

/** Grants that let `role` write the tables and use the sequences of `schema`. */
export function writeGrants(schema: string): (role: string) => string {
  return (role) =>
    `GRANT USAGE ON SCHEMA ${schema} TO ${role}; ` +
    `GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role}; ` +
    `GRANT USAGE ON ALL SEQUENCES IN SCHEMA ${schema} TO ${role};`;
}

async function withAdmin<T>(adminUrl: string, body: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return await body(admin);
  } finally {
    await admin.end();
  }
}
