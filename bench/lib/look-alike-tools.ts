/**
 * Generated tools for the tool search bench: servers of the kinds teams put behind a gateway (a CRM,
 * a ticket tracker, object storage, a data warehouse, a key-value cache, a wiki…), each with the
 * create/list/get/update/delete/search tools of its entities, written the way real servers describe
 * theirs. Several kinds are look-alikes of the reference and built-in servers on purpose (storage reads
 * and writes objects, the warehouse runs SQL, the cache gets and sets keys), so that the tools a query
 * looks for have close competitors. Deterministic: the same count always gives the same tools.
 */
import type { Tool } from "../../src/core/types.ts";

interface Entity {
  readonly name: string;
  /** Plural, for list and search tools. */
  readonly plural: string;
  /** Fields the create and update tools take, with what each is. */
  readonly fields: Readonly<Record<string, string>>;
}

interface Kind {
  /** Server name stem. */
  readonly server: string;
  /** What the server is, in descriptions ("the CRM"). */
  readonly system: string;
  readonly entities: readonly Entity[];
  /** Tools of this kind besides the entity ones: [name, description, parameters]. */
  readonly extra?: readonly (readonly [string, string, Readonly<Record<string, string>>])[];
}

const e = (name: string, plural: string, fields: Record<string, string>): Entity => ({
  name,
  plural,
  fields,
});

const KINDS: readonly Kind[] = [
  {
    server: "crm",
    system: "the CRM",
    entities: [
      e("contact", "contacts", {
        email: "The contact's email address",
        company: "The company they work for",
      }),
      e("deal", "deals", { amount: "The deal's value", stage: "Pipeline stage, e.g. qualified or won" }),
      e("account", "accounts", { domain: "The company's web domain", industry: "The industry" }),
    ],
  },
  {
    server: "tickets",
    system: "the support desk",
    entities: [
      e("ticket", "tickets", { subject: "One-line summary", priority: "low, normal, high or urgent" }),
      e("customer", "customers", { email: "The customer's email", plan: "Their subscription plan" }),
      e("macro", "macros", { body: "The canned reply's text" }),
    ],
    extra: [
      [
        "assign_ticket",
        "Assign a ticket to an agent or a group.",
        { ticket_id: "The ticket", assignee: "Agent or group" },
      ],
    ],
  },
  {
    server: "storage",
    system: "object storage",
    entities: [
      e("bucket", "buckets", {
        region: "Where the bucket lives",
        versioning: "Keep old versions of objects",
      }),
      e("object", "objects", {
        bucket: "The bucket",
        key: "The object's key (its path)",
        content: "The object's bytes",
      }),
    ],
    extra: [
      [
        "read_object",
        "Read the contents of an object in a bucket, as text or base64.",
        { bucket: "The bucket", key: "The object's key" },
      ],
      [
        "copy_object",
        "Copy an object to another key or bucket.",
        { source: "Source key", destination: "Destination key" },
      ],
      [
        "presign_url",
        "Create a temporary download link for an object.",
        { key: "The object's key", expires_in: "Seconds" },
      ],
    ],
  },
  {
    server: "warehouse",
    system: "the data warehouse",
    entities: [
      e("dataset", "datasets", { description: "What the dataset holds" }),
      e("view", "views", { sql: "The view's query" }),
    ],
    extra: [
      [
        "run_query",
        "Run a SQL query on the data warehouse and return the result rows.",
        { sql: "The SELECT statement", limit: "Most rows" },
      ],
      ["list_tables", "List the tables of a dataset in the warehouse.", { dataset: "The dataset" }],
      ["get_table_schema", "Get the columns and types of a warehouse table.", { table: "The table" }],
      ["cancel_job", "Cancel a running query job.", { job_id: "The job" }],
    ],
  },
  {
    server: "cache",
    system: "the key-value cache",
    entities: [],
    extra: [
      ["get_value", "Get the value stored under a key in the cache.", { key: "The key" }],
      [
        "set_value",
        "Store a value under a key, with an optional time to live.",
        { key: "The key", value: "The value", ttl: "Seconds to keep it" },
      ],
      ["delete_value", "Remove a key from the cache.", { key: "The key" }],
      ["flush_namespace", "Remove every key of a namespace.", { namespace: "The namespace" }],
      ["cache_stats", "Hit rate, memory use and key count of the cache.", {}],
    ],
  },
  {
    server: "wiki",
    system: "the wiki",
    entities: [
      e("page", "pages", {
        title: "The page title",
        body: "Markdown content",
        space: "The space it belongs to",
      }),
      e("space", "spaces", { key: "Short key of the space" }),
      e("attachment", "attachments", { page_id: "The page", file_name: "The file's name" }),
    ],
  },
  {
    server: "calendar",
    system: "the calendar",
    entities: [
      e("event", "events", {
        start: "Start time (ISO 8601)",
        end: "End time",
        attendees: "Email addresses invited",
      }),
      e("calendar", "calendars", { timezone: "The calendar's time zone" }),
    ],
    extra: [
      [
        "find_free_slots",
        "Find times when all the given people are free.",
        { attendees: "Email addresses", duration: "Minutes" },
      ],
    ],
  },
  {
    server: "mail",
    system: "the mailbox",
    entities: [
      e("draft", "drafts", { to: "Recipients", subject: "The subject", body: "The message text" }),
      e("label", "labels", { color: "The label's colour" }),
    ],
    extra: [
      [
        "send_email",
        "Send an email to one or more recipients.",
        { to: "Recipients", subject: "The subject", body: "The message text" },
      ],
      [
        "search_messages",
        "Search messages in the mailbox by sender, subject or text.",
        { query: "Search terms" },
      ],
    ],
  },
  {
    server: "chat",
    system: "the team chat",
    entities: [
      e("channel", "channels", { topic: "The channel's topic", private: "Invite-only" }),
      e("message", "messages", { channel: "Where to post", text: "The message" }),
    ],
    extra: [
      [
        "add_reaction",
        "Add an emoji reaction to a message.",
        { message_id: "The message", emoji: "The emoji's name" },
      ],
    ],
  },
  {
    server: "billing",
    system: "billing",
    entities: [
      e("invoice", "invoices", { customer_id: "Who is billed", due_date: "When it is due" }),
      e("subscription", "subscriptions", { plan: "The plan", quantity: "Seats" }),
      e("refund", "refunds", { payment_id: "The payment", amount: "How much to refund" }),
    ],
  },
  {
    server: "monitoring",
    system: "monitoring",
    entities: [
      e("alert", "alerts", { query: "The metric query", threshold: "When it fires" }),
      e("dashboard", "dashboards", { title: "The dashboard's title" }),
    ],
    extra: [
      [
        "query_metrics",
        "Query a time series of a metric over a time range.",
        { metric: "Metric name", from: "Start", to: "End" },
      ],
      ["silence_alert", "Mute an alert for a while.", { alert_id: "The alert", minutes: "How long" }],
    ],
  },
  {
    server: "kanban",
    system: "the project board",
    entities: [
      e("card", "cards", { column: "The board column", due: "Due date" }),
      e("board", "boards", { name: "The board's name" }),
    ],
    extra: [
      ["move_card", "Move a card to another column.", { card_id: "The card", column: "Target column" }],
    ],
  },
  {
    server: "hr",
    system: "the HR system",
    entities: [
      e("employee", "employees", { department: "Their department", manager: "Their manager" }),
      e("leave_request", "leave requests", { start: "First day", end: "Last day" }),
    ],
  },
  {
    server: "inventory",
    system: "inventory",
    entities: [
      e("product", "products", { sku: "Stock keeping unit", price: "Unit price" }),
      e("warehouse_location", "warehouse locations", { address: "Where it is" }),
    ],
    extra: [
      [
        "adjust_stock",
        "Change the stock level of a product.",
        { sku: "The product", delta: "Units to add or remove" },
      ],
    ],
  },
  {
    server: "dns",
    system: "DNS",
    entities: [
      e("record", "records", {
        zone: "The DNS zone",
        type: "A, AAAA, CNAME, TXT…",
        value: "The record's value",
      }),
      e("zone", "zones", { domain: "The domain" }),
    ],
  },
  {
    server: "containers",
    system: "the container platform",
    entities: [
      e("deployment", "deployments", { image: "Container image", replicas: "How many" }),
      e("secret", "secrets", { data: "Key-value pairs" }),
    ],
    extra: [
      ["get_pod_logs", "Get the logs of a pod's container.", { pod: "The pod", tail: "Last lines" }],
      [
        "scale_deployment",
        "Change the number of replicas of a deployment.",
        { name: "The deployment", replicas: "How many" },
      ],
      ["restart_deployment", "Restart the pods of a deployment.", { name: "The deployment" }],
    ],
  },
  {
    server: "docs",
    system: "the document store",
    entities: [
      e("document", "documents", { title: "The title", content: "The text", folder: "Where it is filed" }),
      e("folder", "folders", { parent: "The parent folder" }),
    ],
    extra: [
      [
        "export_document",
        "Export a document as PDF or Markdown.",
        { document_id: "The document", format: "pdf or markdown" },
      ],
    ],
  },
  {
    server: "analytics",
    system: "product analytics",
    entities: [
      e("funnel", "funnels", { steps: "Event names in order" }),
      e("cohort", "cohorts", { filter: "Who belongs" }),
    ],
    extra: [
      ["track_event", "Record a product event for a user.", { user_id: "The user", event: "Event name" }],
    ],
  },
];

const VERBS: readonly (readonly [string, (e: Entity, system: string) => string, "plural" | "single"])[] = [
  ["create", (e, s) => `Create a new ${e.name.replace(/_/g, " ")} in ${s}.`, "single"],
  ["get", (e, s) => `Get one ${e.name.replace(/_/g, " ")} of ${s} by its id, with all its fields.`, "single"],
  ["update", (e, s) => `Update the fields of an existing ${e.name.replace(/_/g, " ")} in ${s}.`, "single"],
  ["delete", (e, s) => `Delete a ${e.name.replace(/_/g, " ")} from ${s}. This cannot be undone.`, "single"],
  ["list", (e, s) => `List the ${e.plural} of ${s}, a page at a time.`, "plural"],
  ["search", (e, s) => `Search the ${e.plural} of ${s} by text and filters.`, "plural"],
  ["archive", (e, s) => `Archive a ${e.name.replace(/_/g, " ")} in ${s}, hiding it from lists.`, "single"],
  ["export", (e, s) => `Export the ${e.plural} of ${s} as CSV.`, "plural"],
];

/** Names several instances of a kind get (a team runs the same server for several regions or teams). */
const INSTANCES = ["", "-eu", "-us", "-staging", "-team2", "-apac", "-legacy", "-sandbox"];

function entityTools(kind: Kind): Tool[] {
  const tools: Tool[] = [];
  for (const entity of kind.entities) {
    for (const [verb, describe, number] of VERBS) {
      const noun = number === "plural" ? entity.plural.replace(/ /g, "_") : entity.name;
      const properties: Record<string, { type: string; description: string }> = {};
      if (verb === "create" || verb === "update") {
        for (const [field, what] of Object.entries(entity.fields))
          properties[field] = { type: "string", description: what };
      }
      if (number === "single" && verb !== "create")
        properties.id = { type: "string", description: `The ${entity.name.replace(/_/g, " ")}'s id` };
      if (verb === "search") properties.query = { type: "string", description: "Words to look for" };
      if (verb === "list" || verb === "search")
        properties.cursor = { type: "string", description: "Where the previous page ended" };
      tools.push({
        name: `${verb}_${noun}`,
        description: describe(entity, kind.system),
        inputSchema: { type: "object", properties } as Tool["inputSchema"],
      });
    }
  }
  for (const [name, description, parameters] of kind.extra ?? []) {
    const properties = Object.fromEntries(
      Object.entries(parameters).map(([p, what]) => [p, { type: "string", description: what }]),
    );
    tools.push({ name, description, inputSchema: { type: "object", properties } as Tool["inputSchema"] });
  }
  return tools;
}

export interface GeneratedServer {
  readonly name: string;
  readonly tools: readonly Tool[];
}

/**
 * `count` generated tools, as servers: every kind once, then again under instance names (crm-eu,
 * crm-us…), then numbered, until there are enough; the last server is cut to fit.
 */
export function lookAlikeServers(count: number): GeneratedServer[] {
  const servers: GeneratedServer[] = [];
  let left = count;
  for (let round = 0; left > 0; round++) {
    const suffix = round < INSTANCES.length ? INSTANCES[round] : `-${round}`;
    for (const kind of KINDS) {
      if (left <= 0) break;
      const tools = entityTools(kind).slice(0, left);
      servers.push({ name: `${kind.server}${suffix}`, tools });
      left -= tools.length;
    }
  }
  return servers;
}
