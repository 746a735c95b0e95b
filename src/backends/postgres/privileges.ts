/**
 * What the PostgreSQL role of a database backend may do that a read-only transaction does not stop.
 *
 * `BEGIN READ ONLY` protects the data, not the server: inside it, a superuser or a member of the
 * right predefined roles can still run programs on the database host (`COPY … TO PROGRAM`), read
 * and write its files (`pg_read_file`, `COPY … TO '/path'`, `lo_import`), reload its configuration,
 * end other sessions, or create replication slots (which a rollback does not undo). The backend asks
 * PostgreSQL, at every start and after every reconnect, which of those powers its role has, and in
 * read-only mode refuses to serve with a role that has any.
 *
 * The question is asked of every role the session can act as, not only the login role: SQL can
 * `SET ROLE` to any role its login role is a member of (and `RESET ROLE` back), so a membership is
 * as good as the power itself. The checks ask PostgreSQL rather than match names where they can:
 * - role attributes (SUPERUSER, REPLICATION, CREATEROLE) of every role the session can become;
 * - membership in the predefined roles that reach the host or other sessions;
 * - EXECUTE on every function that PostgreSQL or an installed extension keeps from PUBLIC (server
 *   files, configuration reload, WAL switches, promotion, large-object import and export, adminpack,
 *   dblink_connect_u, …), so a function added by a later version is caught without a list. The
 *   only exceptions are the monitoring functions PostgreSQL grants to pg_monitor and its kin: they
 *   list the names and sizes of files in directories the server manages, or read statistics, and
 *   change nothing;
 * - EXECUTE on the functions of extensions that open connections from the server to other hosts
 *   (dblink), which PUBLIC may execute by default;
 * - SET on superuser-only parameters granted with `GRANT SET ON PARAMETER` (PostgreSQL 15+).
 *
 * Not covered, because they are grants an operator made on purpose: foreign tables (file_fdw,
 * postgres_fdw) and SECURITY DEFINER functions the role may use act with their owners' powers.
 */

/** One power of the role that a read-only transaction does not take away. */
export interface PrivilegeFinding {
  readonly kind: "superuser" | "replication" | "createrole" | "role" | "function" | "extension" | "parameter";
  /**
   * The role that has the attribute, the predefined role, the function's signature, the extension
   * (as "extension: function signature") or the parameter.
   */
  readonly name: string;
}

/** What the backend learnt about its role. */
export interface RoleReport {
  /** The login role (session_user). */
  readonly role: string;
  readonly database: string;
  /** server_version_num, e.g. 150004. */
  readonly serverVersion: number;
  /** Empty for a role that cannot reach the host or other sessions. */
  readonly findings: readonly PrivilegeFinding[];
}

/** Runs one query; `params` are bound ($1, $2, …). */
export type Query = (sql: string, params?: readonly unknown[]) => Promise<readonly Record<string, unknown>[]>;

/** Predefined roles whose members reach the host or other sessions, and what each allows. */
const PREDEFINED_ROLES: Readonly<Record<string, string>> = {
  pg_execute_server_program: "runs programs on the database host with COPY … PROGRAM",
  pg_read_server_files: "reads files of the database host with COPY … FROM a file or pg_read_file",
  pg_write_server_files: "writes files on the database host with COPY … TO a file",
  pg_signal_backend: "cancels and ends other roles' sessions with pg_cancel_backend and pg_terminate_backend",
  pg_checkpoint: "forces checkpoints with CHECKPOINT",
};

/**
 * Roles PostgreSQL grants monitoring functions to. A function kept from PUBLIC but granted to one of
 * these by default only lists or reads statistics (pg_ls_waldir, pg_buffercache_pages, pgstattuple).
 */
const MONITORING_ROLES = ["pg_monitor", "pg_read_all_stats", "pg_stat_scan_tables", "pg_read_all_settings"];

/**
 * Functions that reach the host whoever they are granted to: never excused as monitoring, even when
 * an operator has granted one of them to a monitoring role.
 */
const HOST_FUNCTIONS = [
  "pg_read_file",
  "pg_read_binary_file",
  "pg_ls_dir",
  "pg_stat_file",
  "lo_import",
  "lo_export",
  "pg_reload_conf",
  "pg_rotate_logfile",
  "pg_promote",
  "pg_switch_wal",
  "pg_file_write",
  "pg_file_rename",
  "pg_file_unlink",
  "pg_file_sync",
  "pg_logdir_ls",
  "dblink_connect_u",
];

/** Extensions whose functions (public by default) open connections from the server to other hosts. */
const NETWORK_EXTENSIONS = ["dblink", "http", "pg_net"];

const ABOUT_SQL = `SELECT session_user::text AS role, pg_catalog.current_database()::text AS database,
  pg_catalog.current_setting('server_version_num')::int AS version`;

const FINDINGS_SQL = `
WITH me AS (
  -- Every role the session can act as: the login role and every role it may SET ROLE to.
  SELECT r.oid, r.rolname::text AS rolname, r.rolsuper, r.rolreplication, r.rolcreaterole
  FROM pg_catalog.pg_roles r
  WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')
),
candidates AS MATERIALIZED (
  -- Functions of the catalog and of extensions that PUBLIC may not execute, and the functions of
  -- the extensions that connect to other hosts.
  SELECT p.oid, p.proname::text AS proname, p.proacl, e.extname::text AS extname,
         p.proacl IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'
         ) AS kept
  FROM pg_catalog.pg_proc p
  LEFT JOIN pg_catalog.pg_depend d
    ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e'
  LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
  WHERE (p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace OR e.oid IS NOT NULL)
    AND (p.proacl IS NOT NULL OR e.extname = ANY ($4::text[]))
),
usable AS (
  SELECT c.* FROM candidates c
  WHERE (c.kept OR c.extname = ANY ($4::text[]))
    AND EXISTS (SELECT 1 FROM me WHERE pg_catalog.has_function_privilege(me.oid, c.oid, 'EXECUTE'))
)
SELECT 'superuser' AS kind, rolname AS name FROM me WHERE rolsuper
UNION ALL
SELECT 'replication', rolname FROM me WHERE rolreplication
UNION ALL
SELECT 'createrole', rolname FROM me WHERE rolcreaterole
UNION ALL
SELECT 'role', rolname FROM me WHERE rolname = ANY ($1::text[])
UNION ALL
SELECT 'function', u.oid::pg_catalog.regprocedure::text FROM usable u
WHERE u.kept
  AND (u.proname = ANY ($3::text[]) OR NOT EXISTS (
    SELECT 1 FROM pg_catalog.aclexplode(u.proacl) a JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
    WHERE g.rolname = ANY ($2::text[]) AND a.privilege_type = 'EXECUTE'
  ))
UNION ALL
SELECT 'extension', u.extname || ': ' || u.oid::pg_catalog.regprocedure::text FROM usable u
WHERE u.extname = ANY ($4::text[])
ORDER BY 1, 2`;

/**
 * Superuser-only parameters the session was granted SET on (PostgreSQL 15+). pg_settings hides some
 * rows from unprivileged roles; a parameter it does not show counts as superuser-only.
 */
const PARAMETERS_SQL = `
SELECT 'parameter' AS kind, a.parname::text AS name
FROM pg_catalog.pg_parameter_acl a
WHERE EXISTS (
    SELECT 1 FROM pg_catalog.pg_roles r
    WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')
      AND pg_catalog.has_parameter_privilege(r.oid, a.parname, 'SET')
  )
  AND coalesce((SELECT s.context FROM pg_catalog.pg_settings s WHERE s.name = a.parname), 'superuser') <> 'user'
ORDER BY 2`;

/** Asks the server what the session's role may do: three short catalog queries (two before PostgreSQL 15). */
export async function inspectRole(query: Query): Promise<RoleReport> {
  const [about] = await query(ABOUT_SQL);
  const serverVersion = Number(about?.version);
  const rows = [
    ...(await query(FINDINGS_SQL, [
      Object.keys(PREDEFINED_ROLES),
      MONITORING_ROLES,
      HOST_FUNCTIONS,
      NETWORK_EXTENSIONS,
    ])),
    ...(serverVersion >= 150_000 ? await query(PARAMETERS_SQL) : []),
  ];
  return {
    role: String(about?.role),
    database: String(about?.database),
    serverVersion,
    findings: rows.map((row) => ({
      kind: row.kind as PrivilegeFinding["kind"],
      name: String(row.name),
    })),
  };
}

/** "is a superuser", or "is a member of pg_execute_server_program, which runs programs …; has REPLICATION …" */
export function describeFindings(report: RoleReport): string {
  const of = (kind: PrivilegeFinding["kind"]) =>
    report.findings.filter((f) => f.kind === kind).map((f) => f.name);
  const via = (role: string) =>
    role === report.role ? "" : ` through role "${role}", which it can SET ROLE to`;
  const superusers = of("superuser");
  // A superuser can do all the rest; listing it would only bury the point.
  if (superusers.length > 0) {
    const first = superusers.includes(report.role) ? report.role : (superusers[0] as string);
    return `is a superuser${via(first)}`;
  }
  const parts: string[] = [];
  for (const role of of("replication")) {
    parts.push(
      `has REPLICATION${via(role)} (creates and drops replication slots, which a rollback does not undo)`,
    );
  }
  for (const role of of("createrole")) {
    parts.push(`has CREATEROLE${via(role)} (can grant roles, including the ones that reach the host)`);
  }
  for (const role of of("role")) {
    parts.push(`is a member of ${role}, which ${PREDEFINED_ROLES[role] ?? "reaches beyond the data"}`);
  }
  const functions = of("function");
  if (functions.length > 0) {
    parts.push(`may execute functions PostgreSQL or an extension keeps from PUBLIC: ${sample(functions)}`);
  }
  const extensions = of("extension");
  if (extensions.length > 0) {
    parts.push(
      `may execute functions of extensions that connect from the database server to other hosts: ${sample(extensions)}`,
    );
  }
  const parameters = of("parameter");
  if (parameters.length > 0) parts.push(`may SET superuser-only parameters: ${sample(parameters)}`);
  return parts.join("; ");
}

function sample(names: readonly string[]): string {
  const shown = names.slice(0, 6).join(", ");
  return names.length > 6 ? `${shown} and ${names.length - 6} more` : shown;
}

/** What such a role can do that read-only mode cannot stop: the reason behind the refusal. */
const WHY =
  "a read-only transaction keeps the data unchanged, not the server: SQL sent to the query tool " +
  "could use these rights to run programs or read and write files on the database host, reload its " +
  "configuration or reach other sessions";

/** SQL that creates a role that can read and nothing more (pg_read_all_data came with PostgreSQL 14). */
export function leastPrivilegeRecipe(report: Pick<RoleReport, "database" | "serverVersion">): string {
  const database = quoteIdentifier(report.database);
  const everything =
    report.serverVersion >= 140_000
      ? "GRANT pg_read_all_data TO switchboard_reader; (every table), or for chosen schemas only: "
      : "";
  return (
    `CREATE ROLE switchboard_reader LOGIN PASSWORD '…'; GRANT CONNECT ON DATABASE ${database} TO switchboard_reader; ` +
    `${everything}GRANT USAGE ON SCHEMA app TO switchboard_reader; ` +
    "GRANT SELECT ON ALL TABLES IN SCHEMA app TO switchboard_reader;"
  );
}

/** Why a read-only backend will not serve with this role, and what to do about it. */
export function refusalMessage(name: string, where: string, report: RoleReport): string {
  return (
    `Database backend "${name}" refuses to serve read-only as role "${report.role}" on ${where}: the role ` +
    `${describeFindings(report)}. ${capitalise(WHY)}. Connect as a role that can only read, created by a ` +
    `superuser with: ${leastPrivilegeRecipe(report)} Then put that role in the backend's url. To serve with ` +
    `this role anyway, set allowPrivilegedRole: true on the backend (unsafe: it gives every caller of the ` +
    "query tool those rights)."
  );
}

/** The warning logged at every start with a privileged role (read-only with the override, or write mode). */
export function privilegedWarning(report: RoleReport, readOnly: boolean): string {
  const mode = readOnly
    ? `allowPrivilegedRole is true, so the backend serves anyway; ${WHY}`
    : "the backend allows writes, and SQL sent to its tools can also use these rights against the database host and other sessions";
  return `the database role "${report.role}" ${describeFindings(report)}: ${mode}. Connect as a least-privileged role (see the README's PostgreSQL section)`;
}

function quoteIdentifier(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
