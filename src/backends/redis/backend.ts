/**
 * Redis as a built-in backend (`type: "redis"` under `backends:`).
 *
 * Read tools, one per question a caller asks of Redis: get, mget, hgetall, lrange, smembers, zrange,
 * scan, ttl and type. Every one is bounded: collections return at most `maxItems` elements (big sets
 * and hashes are read with SSCAN/HSCAN rather than SMEMBERS/HGETALL, ranges are clamped before they
 * are asked for), strings at most `maxValueBytes`, and scan never walks the whole keyspace in one
 * call. A cut result says `truncated: true`.
 *
 * Writes are one tool per allowed command (`set`, `del`, `expire`, …), offered only when the config
 * says `readOnly: false` and lists the command in `allowCommands`. Separate tools rather than one
 * generic `command` tool, because each then has its own schema and annotations (a model sees that
 * `del` is destructive and `sadd` is not; the gateway's policies can treat them apart), and because
 * the backend must know which arguments are keys to keep `keyPrefix` containment: a generic command
 * gives no such guarantee (EVAL, MIGRATE, SORT … STORE name keys anywhere in their arguments).
 *
 * `keyPrefix` confines the backend to keys under it: tools take and return keys without the prefix,
 * the backend prepends it to every key it sends, and scan patterns start with the prefix, escaped, so
 * no pattern reaches past it. Redis ACLs (`~prefix*`) can enforce the same on the server's side.
 *
 * Errors Redis answers (WRONGTYPE, NOPERM, OOM…) are `isError` results the caller can act on; a
 * Redis that cannot be reached is a thrown `backend_unavailable` (or `timeout`). The connection
 * reconnects by itself with jittered exponential backoff; while it is down the backend is `down` and
 * offers no tools.
 */

import { Redis, ReplyError } from "ioredis";
import { z } from "zod";
import { untilAborted } from "../../core/abort.ts";
import { describeError, GatewayError, InvalidArguments } from "../../core/errors.ts";
import {
  type Backend,
  type BackendCatalog,
  type BackendEvents,
  type BackendState,
  type CallContext,
  type CallToolResult,
  EMPTY_CATALOG,
  type GetPromptResult,
  type HealthResult,
  type ReadResourceResult,
  type Tool,
  type ToolCall,
} from "../../core/types.ts";
import type { Logger } from "../../observability/logger.ts";
import { REDIS_WRITE_COMMANDS, type RedisBackendConfig, type RedisWriteCommand } from "../builtin-config.ts";
import { reconnectDelay } from "../reconnect.ts";
import { noPrompt, noResource } from "../tools-only.ts";

export type { RedisBackendConfig, RedisWriteCommand } from "../builtin-config.ts";

export interface RedisBackendOptions {
  /** Backoff between reconnects. Default 100 ms doubling up to 10 s. */
  readonly reconnect?: { readonly initialDelayMs?: number; readonly maxDelayMs?: number };
}

export function createRedisBackend(
  name: string,
  config: RedisBackendConfig,
  logger: Logger,
  options: RedisBackendOptions = {},
): RedisBackend {
  return new RedisBackend(name, config, logger, options);
}

/** What a tool computed: its structured result and notes for the reader (cuts, missing keys). */
interface Output {
  readonly structured: Record<string, unknown>;
  readonly notes?: readonly string[];
}

interface ToolSpec {
  readonly tool: Tool;
  readonly args: z.ZodType;
  run(args: unknown): Promise<Output>;
}

/** SCAN, SSCAN and HSCAN rounds one call may take: bounded work, whatever the keyspace holds. */
const MAX_SCAN_ROUNDS = 100;

/** Which tool reads a key of each type, for WRONGTYPE advice. */
const READER_OF: Readonly<Record<string, string>> = {
  string: "get",
  hash: "hgetall",
  list: "lrange",
  set: "smembers",
  zset: "zrange",
};

const key = () => z.string().min(1).describe("The key (without the backend's key prefix, if it has one).");
const keys = (max: number) => z.array(z.string().min(1)).min(1).max(max).describe("The keys.");
const members = (max: number, what: string) => z.array(z.string()).min(1).max(max).describe(what);

/** A JSON Schema from the zod schema that also checks the arguments or describes the result. */
function jsonSchema(schema: z.ZodType, io: "input" | "output"): Tool["inputSchema"] {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io }) as Record<string, unknown>;
  return rest as Tool["inputSchema"];
}

/** A glob that matches `text` literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

/** Redis' rule for a range's bounds: negative counts from the end; both ends included. */
function clampRange(length: number, start: number, stop: number): { from: number; to: number } {
  const from = Math.max(start < 0 ? length + start : start, 0);
  const to = Math.min(stop < 0 ? length + stop : stop, length - 1);
  return { from, to };
}

export class RedisBackend implements Backend {
  readonly name: string;
  readonly readOnly: boolean;
  readonly #config: RedisBackendConfig;
  readonly #redis: Redis;
  readonly #log: Logger;
  readonly #specs: ReadonlyMap<string, ToolSpec>;
  readonly #tools: readonly Tool[];
  readonly #where: string;
  readonly #secrets: readonly string[];
  #state: BackendState = "stopped";
  #events: BackendEvents | undefined;
  #lastError = "";
  #closed = false;

  constructor(name: string, config: RedisBackendConfig, logger: Logger, options: RedisBackendOptions = {}) {
    this.name = name;
    this.readOnly = config.readOnly;
    this.#config = config;
    this.#log = logger.child({ server: name });
    this.#where = describeRedis(config.url);
    this.#secrets = secretsOf(config.url);
    const initialDelayMs = options.reconnect?.initialDelayMs ?? 100;
    const maxDelayMs = options.reconnect?.maxDelayMs ?? 10_000;
    this.#redis = new Redis(config.url, {
      lazyConnect: true,
      connectionName: `switchboard:${name}`,
      connectTimeout: config.connectTimeoutMs,
      commandTimeout: config.commandTimeoutMs,
      // No answer for this long means the connection is dead even if TCP has not noticed (a cut network
      // drops packets silently): drop it and reconnect, so later calls fail fast instead of waiting.
      socketTimeout: config.commandTimeoutMs,
      // Fail fast while disconnected: a call should get "unavailable" now, not hang in a queue, and a
      // write must not be sent twice because its connection dropped after Redis had run it.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // ioredis counts tries from 1; the backoff counts failed attempts from 0.
      retryStrategy: (times) => reconnectDelay(times - 1, initialDelayMs, maxDelayMs),
    });
    this.#watch();
    const specs = [...this.#readTools(), ...this.#writeTools()];
    this.#specs = new Map(specs.map((spec) => [spec.tool.name, spec]));
    this.#tools = specs.map((spec) => spec.tool);
  }

  get state(): BackendState {
    return this.#state;
  }

  /** Why the backend is not up, for logs and health. */
  get lastError(): string {
    return this.#lastError;
  }

  catalog(): BackendCatalog {
    return this.#state === "up" ? { ...EMPTY_CATALOG, tools: this.#tools } : EMPTY_CATALOG;
  }

  async start(events: BackendEvents): Promise<void> {
    this.#events = events;
    this.#closed = false;
    this.#setState("starting");
    try {
      await this.#redis.connect();
    } catch (error) {
      // ioredis goes on reconnecting by itself; 'ready' brings the backend up when it succeeds.
      this.#lastError ||= this.#redact(describeError(error));
      this.#log.warn({ err: this.#lastError, where: this.#where }, "Redis unreachable");
      if (this.#state !== "up") this.#setState("down", this.#lastError);
    }
  }

  async callTool(call: ToolCall, ctx: CallContext): Promise<CallToolResult> {
    const spec = this.#specs.get(call.tool);
    if (!spec) throw this.#unknownTool(call.tool);
    const parsed = spec.args.safeParse(call.args);
    if (!parsed.success) {
      const problems = parsed.error.issues
        .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "arguments"}: ${issue.message}`)
        .join("; ");
      throw new InvalidArguments(
        `Invalid arguments for tool "${call.tool}" of Redis backend "${this.name}": ${problems}. ` +
          "See the tool's inputSchema.",
        { server: this.name, tool: call.tool },
      );
    }
    if (this.#state !== "up" || this.#redis.status !== "ready") throw this.#unavailable(call.tool);
    try {
      const output = await untilAborted(spec.run(parsed.data), ctx.signal);
      return {
        content: [
          { type: "text", text: JSON.stringify(output.structured) },
          ...(output.notes ?? []).map((text) => ({ type: "text" as const, text })),
        ],
        structuredContent: output.structured,
      };
    } catch (error) {
      if (error instanceof ReplyError) return this.#refused(call.tool, error as Error);
      throw this.#translate(error, call.tool, ctx.signal);
    }
  }

  async readResource(uri: string): Promise<ReadResourceResult> {
    throw noResource(this.name, "redis", uri);
  }

  async getPrompt(name: string): Promise<GetPromptResult> {
    throw noPrompt(this.name, "redis", name);
  }

  async health(signal: AbortSignal): Promise<HealthResult> {
    const data = {
      connection: this.#redis.status,
      keyPrefix: this.#config.keyPrefix,
      readOnly: this.readOnly,
    };
    if (this.#state !== "up" || this.#redis.status !== "ready") {
      return {
        status: "unhealthy",
        detail: `${this.#where}: ${this.#lastError || this.#redis.status}`,
        data,
      };
    }
    const started = performance.now();
    try {
      await untilAborted(this.#redis.ping(), signal);
      return { status: "healthy", latencyMs: performance.now() - started, data };
    } catch (error) {
      return {
        status: "unhealthy",
        detail: `PING failed on ${this.#where}: ${this.#redact(describeError(error))}`,
        data,
      };
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#setState("stopped");
    if (this.#redis.status === "ready") {
      try {
        await this.#redis.quit();
        return;
      } catch {
        // Fall through: drop the socket instead.
      }
    }
    this.#redis.disconnect();
  }

  // ─── connection ─────────────────────────────────────────────────────────────────────────────

  #watch(): void {
    // Unheard, an 'error' event would crash the process; ioredis reconnects after it by itself.
    this.#redis.on("error", (error: Error) => {
      this.#lastError = this.#redact(describeError(error));
      this.#log.debug({ err: this.#lastError }, "Redis connection error");
    });
    this.#redis.on("ready", () => {
      if (this.#closed) return;
      this.#lastError = "";
      this.#log.info({ where: this.#where, readOnly: this.readOnly }, "Redis up");
      this.#setState("up");
    });
    this.#redis.on("close", () => {
      if (this.#closed || this.#state === "down") return;
      const reason = this.#lastError || "the connection closed";
      this.#log.warn({ err: reason, where: this.#where }, "Redis connection lost; reconnecting");
      this.#setState("down", reason);
    });
  }

  #setState(state: BackendState, reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#events?.state(state, reason);
  }

  // ─── keys ───────────────────────────────────────────────────────────────────────────────────

  #k(name: string): string {
    return this.#config.keyPrefix + name;
  }

  #unprefixed(stored: string): string {
    return stored.slice(this.#config.keyPrefix.length);
  }

  /** A string value cut to maxValueBytes, and whether it was. */
  #clip(value: string): { value: string; cut: boolean } {
    const max = this.#config.maxValueBytes;
    if (value.length * 3 <= max || Buffer.byteLength(value, "utf8") <= max) return { value, cut: false };
    return { value: Buffer.from(value, "utf8").subarray(0, max).toString("utf8"), cut: true };
  }

  #cutNote(what: string): string {
    return (
      `Truncated: ${what}. This backend returns at most ${this.#config.maxItems} elements (maxItems) and ` +
      `${this.#config.maxValueBytes} bytes per value (maxValueBytes); ask for a narrower range to see the rest.`
    );
  }

  // ─── tools ──────────────────────────────────────────────────────────────────────────────────

  #spec<S extends z.ZodType>(definition: {
    name: string;
    title: string;
    description: string;
    args: S;
    output: z.ZodType;
    annotations: NonNullable<Tool["annotations"]>;
    run: (args: z.output<S>) => Promise<Output>;
  }): ToolSpec {
    return {
      tool: {
        name: definition.name,
        title: definition.title,
        description: definition.description,
        inputSchema: jsonSchema(definition.args, "input"),
        outputSchema: jsonSchema(definition.output, "output"),
        annotations: { title: definition.title, ...definition.annotations },
      },
      args: definition.args,
      run: (args) => definition.run(args as z.output<S>),
    };
  }

  #readTools(): ToolSpec[] {
    const redis = this.#redis;
    const { maxItems } = this.#config;
    const read = { readOnlyHint: true, openWorldHint: false } as const;
    const scope = this.#config.keyPrefix ? ` Keys are relative to this backend's prefix.` : "";

    return [
      this.#spec({
        name: "get",
        title: "Get a string value",
        description: `Returns the string value of a key (null when the key does not exist).${scope}`,
        args: z.strictObject({ key: key() }),
        output: z.object({ key: z.string(), value: z.string().nullable(), truncated: z.boolean() }),
        annotations: read,
        run: async (args) => {
          const stored = this.#k(args.key);
          // EXISTS tells a missing key from an empty string; GETRANGE reads no more than the limit.
          const [exists, length, head] = await this.#pipeline(
            redis
              .pipeline()
              .exists(stored)
              .strlen(stored)
              .getrange(stored, 0, this.#config.maxValueBytes - 1),
          );
          if (exists === 0) return { structured: { key: args.key, value: null, truncated: false } };
          const cut = (length as number) > this.#config.maxValueBytes;
          return {
            structured: { key: args.key, value: head as string, truncated: cut },
            notes: cut ? [this.#cutNote(`the value is ${length} bytes long`)] : [],
          };
        },
      }),
      this.#spec({
        name: "mget",
        title: "Get several string values",
        description: `Returns the string values of up to ${maxItems} keys at once (null for a key that does not exist or holds another type).${scope}`,
        args: z.strictObject({ keys: keys(maxItems) }),
        output: z.object({
          values: z.array(z.object({ key: z.string(), value: z.string().nullable() })),
          truncated: z.boolean(),
        }),
        annotations: read,
        run: async (args) => {
          const values = await redis.mget(...args.keys.map((k) => this.#k(k)));
          let cut = false;
          const out = args.keys.map((k, i) => {
            const value = values[i] ?? null;
            if (value === null) return { key: k, value };
            const clipped = this.#clip(value);
            cut ||= clipped.cut;
            return { key: k, value: clipped.value };
          });
          return {
            structured: { values: out, truncated: cut },
            notes: cut ? [this.#cutNote("some values were cut at maxValueBytes")] : [],
          };
        },
      }),
      this.#spec({
        name: "hgetall",
        title: "Get the fields of a hash",
        description: `Returns the fields and values of a hash (up to ${maxItems} fields; {} when the key does not exist).${scope}`,
        args: z.strictObject({ key: key() }),
        output: z.object({
          key: z.string(),
          size: z.number().int(),
          fields: z.record(z.string(), z.string()),
          truncated: z.boolean(),
        }),
        annotations: read,
        run: async (args) => {
          const stored = this.#k(args.key);
          const size = await redis.hlen(stored);
          let pairs: string[];
          if (size <= maxItems) {
            pairs = Object.entries(await redis.hgetall(stored)).flat();
          } else {
            pairs = await this.#collect(
              (cursor) => redis.hscan(stored, cursor, "COUNT", Math.min(maxItems, 1_000)),
              maxItems * 2,
            );
          }
          const fields: Record<string, string> = {};
          let kept = 0;
          let cut = size > maxItems;
          for (let i = 0; i + 1 < pairs.length && kept < maxItems; i += 2) {
            const name = pairs[i] as string;
            // HSCAN may return a field twice.
            if (Object.hasOwn(fields, name)) continue;
            const clipped = this.#clip(pairs[i + 1] as string);
            cut ||= clipped.cut;
            fields[name] = clipped.value;
            kept++;
          }
          return {
            structured: { key: args.key, size, fields, truncated: cut },
            notes: cut ? [this.#cutNote(`the hash has ${size} fields`)] : [],
          };
        },
      }),
      this.#spec({
        name: "lrange",
        title: "Read a range of a list",
        description:
          `Returns the elements of a list from start to stop, both included (0 is the first, -1 the last); ` +
          `at most ${maxItems} per call.${scope}`,
        args: z.strictObject({
          key: key(),
          start: z
            .number()
            .int()
            .default(0)
            .describe("First index; negative counts from the end. Default 0."),
          stop: z
            .number()
            .int()
            .default(-1)
            .describe("Last index, included; -1 is the last element. Default -1."),
        }),
        output: z.object({
          key: z.string(),
          length: z.number().int(),
          start: z.number().int(),
          items: z.array(z.string()),
          truncated: z.boolean(),
        }),
        annotations: read,
        run: async (args) => {
          const stored = this.#k(args.key);
          const length = await redis.llen(stored);
          const { from, to } = clampRange(length, args.start, args.stop);
          const last = Math.min(to, from + maxItems - 1);
          const items = last < from ? [] : await redis.lrange(stored, from, last);
          let cut = last < to;
          const clipped = items.map((item) => {
            const c = this.#clip(item);
            cut ||= c.cut;
            return c.value;
          });
          return {
            structured: { key: args.key, length, start: from, items: clipped, truncated: cut },
            notes: cut ? [this.#cutNote(`the range holds ${to - from + 1} elements`)] : [],
          };
        },
      }),
      this.#spec({
        name: "smembers",
        title: "Get the members of a set",
        description: `Returns the members of a set (up to ${maxItems}; [] when the key does not exist).${scope}`,
        args: z.strictObject({ key: key() }),
        output: z.object({
          key: z.string(),
          size: z.number().int(),
          members: z.array(z.string()),
          truncated: z.boolean(),
        }),
        annotations: read,
        run: async (args) => {
          const stored = this.#k(args.key);
          const size = await redis.scard(stored);
          const found =
            size <= maxItems
              ? await redis.smembers(stored)
              : await this.#collect(
                  (cursor) => redis.sscan(stored, cursor, "COUNT", Math.min(maxItems, 1_000)),
                  maxItems,
                );
          // SSCAN may return a member twice; a set's members are unique.
          const unique = [...new Set(found)].slice(0, maxItems);
          let cut = size > unique.length;
          const out = unique.map((member) => {
            const c = this.#clip(member);
            cut ||= c.cut;
            return c.value;
          });
          return {
            structured: { key: args.key, size, members: out, truncated: cut },
            notes: cut ? [this.#cutNote(`the set has ${size} members`)] : [],
          };
        },
      }),
      this.#spec({
        name: "zrange",
        title: "Read a range of a sorted set",
        description:
          `Returns the members of a sorted set by rank, from start to stop, both included (0 is the lowest ` +
          `score, -1 the highest; rev: true reverses the order), with their scores if asked; at most ` +
          `${maxItems} per call.${scope}`,
        args: z.strictObject({
          key: key(),
          start: z.number().int().default(0).describe("First rank; negative counts from the end. Default 0."),
          stop: z.number().int().default(-1).describe("Last rank, included; -1 is the last. Default -1."),
          withScores: z
            .boolean()
            .default(false)
            .describe("Return each member with its score. Default false."),
          rev: z.boolean().default(false).describe("Highest score first. Default false."),
        }),
        output: z.object({
          key: z.string(),
          size: z.number().int(),
          start: z.number().int(),
          members: z.array(
            z.union([z.string(), z.object({ member: z.string(), score: z.union([z.number(), z.string()]) })]),
          ),
          truncated: z.boolean(),
        }),
        annotations: read,
        run: async (args) => {
          const stored = this.#k(args.key);
          const size = await redis.zcard(stored);
          const { from, to } = clampRange(size, args.start, args.stop);
          const last = Math.min(to, from + maxItems - 1);
          const options = [...(args.rev ? ["REV"] : []), ...(args.withScores ? ["WITHSCORES"] : [])];
          const reply =
            last < from ? [] : ((await redis.call("ZRANGE", stored, from, last, ...options)) as string[]);
          const members: (string | { member: string; score: number | string })[] = [];
          if (args.withScores) {
            for (let i = 0; i + 1 < reply.length; i += 2) {
              const score = Number(reply[i + 1]);
              // ±inf has no JSON number; Redis' own text for it does.
              members.push({
                member: reply[i] as string,
                score: Number.isFinite(score) ? score : (reply[i + 1] as string),
              });
            }
          } else {
            members.push(...reply);
          }
          const cut = last < to;
          return {
            structured: { key: args.key, size, start: from, members, truncated: cut },
            notes: cut ? [this.#cutNote(`the range holds ${to - from + 1} members`)] : [],
          };
        },
      }),
      this.#spec({
        name: "scan",
        title: "Find keys",
        description:
          `Lists keys matching a glob pattern, a page at a time: pass the returned cursor back to continue; ` +
          `cursor "0" (done: true) means the whole keyspace was seen. Returns about count keys per page (at ` +
          `most ${maxItems}), possibly fewer or none while done is false. Never blocks Redis (SCAN, not KEYS).${scope}`,
        args: z.strictObject({
          cursor: z
            .string()
            .regex(/^\d+$/, { error: 'must be "0" to start, or the cursor a previous scan returned' })
            .default("0")
            .describe(
              'Where to continue: "0" to start, else the cursor the previous page returned. Default "0".',
            ),
          match: z.string().min(1).default("*").describe('Glob over key names, e.g. "user:*". Default "*".'),
          count: z
            .number()
            .int()
            .min(1)
            .max(maxItems)
            .default(Math.min(100, maxItems))
            .describe("Keys wanted per page. Default 100."),
          type: z
            .enum(["string", "list", "set", "zset", "hash", "stream"])
            .optional()
            .describe("Only keys of this type. Default: any."),
        }),
        output: z.object({ cursor: z.string(), done: z.boolean(), keys: z.array(z.string()) }),
        annotations: read,
        run: async (args) => {
          const pattern = escapeGlob(this.#config.keyPrefix) + args.match;
          const found: string[] = [];
          let cursor = args.cursor;
          for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
            const [next, batch] = (await redis.call(
              "SCAN",
              cursor,
              "MATCH",
              pattern,
              "COUNT",
              args.count,
              ...(args.type ? ["TYPE", args.type] : []),
            )) as [string, string[]];
            cursor = next;
            found.push(...batch);
            if (cursor === "0" || found.length >= args.count) break;
          }
          return {
            structured: { cursor, done: cursor === "0", keys: found.map((k) => this.#unprefixed(k)) },
          };
        },
      }),
      this.#spec({
        name: "ttl",
        title: "Time to live of a key",
        description: `Says whether a key exists and, if it expires, in how many seconds.${scope}`,
        args: z.strictObject({ key: key() }),
        output: z.object({
          key: z.string(),
          exists: z.boolean(),
          expires: z.boolean(),
          ttlSeconds: z.number().nullable(),
        }),
        annotations: read,
        run: async (args) => {
          const ms = await redis.pttl(this.#k(args.key));
          return {
            structured: {
              key: args.key,
              exists: ms !== -2,
              expires: ms >= 0,
              ttlSeconds: ms >= 0 ? ms / 1000 : null,
            },
          };
        },
      }),
      this.#spec({
        name: "type",
        title: "Type of a key",
        description: `Returns the type of the value at a key: string, list, set, zset, hash, stream, or none when it does not exist.${scope}`,
        args: z.strictObject({ key: key() }),
        output: z.object({ key: z.string(), type: z.string() }),
        annotations: read,
        run: async (args) => ({ structured: { key: args.key, type: await redis.type(this.#k(args.key)) } }),
      }),
    ];
  }

  #writeTools(): ToolSpec[] {
    if (this.readOnly) return [];
    const redis = this.#redis;
    const { maxItems } = this.#config;
    const allowed = new Set<RedisWriteCommand>(this.#config.allowCommands);
    const scope = this.#config.keyPrefix ? ` Keys are relative to this backend's prefix.` : "";
    const write = (destructive: boolean, idempotent: boolean) =>
      ({
        readOnlyHint: false,
        destructiveHint: destructive,
        idempotentHint: idempotent,
        openWorldHint: false,
      }) as const;
    const keyed = z.object({ key: z.string() });

    const all: Record<RedisWriteCommand, () => ToolSpec> = {
      set: () =>
        this.#spec({
          name: "set",
          title: "Set a string value",
          description: `Sets a key to a string value, replacing what it held; optionally with an expiry, or only if the key is new (nx) or exists (xx).${scope}`,
          args: z.strictObject({
            key: key(),
            value: z.string().describe("The value."),
            ttlSeconds: z
              .number()
              .int()
              .positive()
              .optional()
              .describe("Expire after this many seconds. Default: never."),
            only: z
              .enum(["nx", "xx"])
              .optional()
              .describe('"nx": only if the key does not exist; "xx": only if it does.'),
          }),
          output: keyed.extend({ written: z.boolean() }),
          annotations: write(true, true),
          run: async (args) => {
            const options = [
              ...(args.ttlSeconds === undefined ? [] : ["EX", args.ttlSeconds]),
              ...(args.only === undefined ? [] : [args.only.toUpperCase()]),
            ];
            const reply = await redis.call("SET", this.#k(args.key), args.value, ...options);
            return { structured: { key: args.key, written: reply === "OK" } };
          },
        }),
      del: () =>
        this.#spec({
          name: "del",
          title: "Delete keys",
          description: `Deletes keys, whatever they hold. Returns how many existed.${scope}`,
          args: z.strictObject({ keys: keys(maxItems) }),
          output: z.object({ deleted: z.number().int() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: { deleted: await redis.del(...args.keys.map((k) => this.#k(k))) },
          }),
        }),
      expire: () =>
        this.#spec({
          name: "expire",
          title: "Set a key's expiry",
          description: `Makes a key expire after a number of seconds (replacing any earlier expiry).${scope}`,
          args: z.strictObject({
            key: key(),
            seconds: z.number().int().positive().describe("Seconds until the key is deleted."),
          }),
          output: keyed.extend({ applied: z.boolean() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: {
              key: args.key,
              applied: (await redis.expire(this.#k(args.key), args.seconds)) === 1,
            },
          }),
        }),
      persist: () =>
        this.#spec({
          name: "persist",
          title: "Remove a key's expiry",
          description: `Removes the expiry of a key, so that it stays until deleted.${scope}`,
          args: z.strictObject({ key: key() }),
          output: keyed.extend({ applied: z.boolean() }),
          annotations: write(false, true),
          run: async (args) => ({
            structured: { key: args.key, applied: (await redis.persist(this.#k(args.key))) === 1 },
          }),
        }),
      incr: () =>
        this.#spec({
          name: "incr",
          title: "Increment a counter",
          description: `Adds an integer to the number stored at a key (a missing key counts as 0) and returns the new value.${scope}`,
          args: z.strictObject({
            key: key(),
            by: z.number().int().default(1).describe("The amount, may be negative. Default 1."),
          }),
          output: keyed.extend({ value: z.number() }),
          annotations: write(true, false),
          run: async (args) => ({
            structured: { key: args.key, value: await redis.incrby(this.#k(args.key), args.by) },
          }),
        }),
      hset: () =>
        this.#spec({
          name: "hset",
          title: "Set fields of a hash",
          description: `Sets fields of a hash, replacing their values. Returns how many fields were new.${scope}`,
          args: z.strictObject({
            key: key(),
            fields: z
              .record(z.string(), z.string())
              .refine((fields) => Object.keys(fields).length > 0, { error: "give at least one field" })
              .describe("Field names and their values."),
          }),
          output: keyed.extend({ added: z.number().int() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: { key: args.key, added: await redis.hset(this.#k(args.key), args.fields) },
          }),
        }),
      hdel: () =>
        this.#spec({
          name: "hdel",
          title: "Delete fields of a hash",
          description: `Deletes fields of a hash. Returns how many existed.${scope}`,
          args: z.strictObject({ key: key(), fields: members(maxItems, "The field names.") }),
          output: keyed.extend({ removed: z.number().int() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: { key: args.key, removed: await redis.hdel(this.#k(args.key), ...args.fields) },
          }),
        }),
      lpush: () =>
        this.#spec({
          name: "lpush",
          title: "Prepend to a list",
          description: `Inserts values at the head of a list, in order (the last given ends up first). Returns the new length.${scope}`,
          args: z.strictObject({ key: key(), values: members(maxItems, "The values.") }),
          output: keyed.extend({ length: z.number().int() }),
          annotations: write(false, false),
          run: async (args) => ({
            structured: { key: args.key, length: await redis.lpush(this.#k(args.key), ...args.values) },
          }),
        }),
      rpush: () =>
        this.#spec({
          name: "rpush",
          title: "Append to a list",
          description: `Appends values at the tail of a list, in order. Returns the new length.${scope}`,
          args: z.strictObject({ key: key(), values: members(maxItems, "The values.") }),
          output: keyed.extend({ length: z.number().int() }),
          annotations: write(false, false),
          run: async (args) => ({
            structured: { key: args.key, length: await redis.rpush(this.#k(args.key), ...args.values) },
          }),
        }),
      sadd: () =>
        this.#spec({
          name: "sadd",
          title: "Add members to a set",
          description: `Adds members to a set. Returns how many were new.${scope}`,
          args: z.strictObject({ key: key(), members: members(maxItems, "The members.") }),
          output: keyed.extend({ added: z.number().int() }),
          annotations: write(false, true),
          run: async (args) => ({
            structured: { key: args.key, added: await redis.sadd(this.#k(args.key), ...args.members) },
          }),
        }),
      srem: () =>
        this.#spec({
          name: "srem",
          title: "Remove members from a set",
          description: `Removes members from a set. Returns how many were there.${scope}`,
          args: z.strictObject({ key: key(), members: members(maxItems, "The members.") }),
          output: keyed.extend({ removed: z.number().int() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: { key: args.key, removed: await redis.srem(this.#k(args.key), ...args.members) },
          }),
        }),
      zadd: () =>
        this.#spec({
          name: "zadd",
          title: "Add members to a sorted set",
          description: `Adds members with scores to a sorted set, or updates the scores of members already there. Returns how many were new.${scope}`,
          args: z.strictObject({
            key: key(),
            members: z
              .array(z.strictObject({ member: z.string(), score: z.number() }))
              .min(1)
              .max(maxItems)
              .describe("The members and their scores."),
          }),
          output: keyed.extend({ added: z.number().int() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: {
              key: args.key,
              added: await redis.zadd(this.#k(args.key), ...args.members.flatMap((m) => [m.score, m.member])),
            },
          }),
        }),
      zrem: () =>
        this.#spec({
          name: "zrem",
          title: "Remove members from a sorted set",
          description: `Removes members from a sorted set. Returns how many were there.${scope}`,
          args: z.strictObject({ key: key(), members: members(maxItems, "The members.") }),
          output: keyed.extend({ removed: z.number().int() }),
          annotations: write(true, true),
          run: async (args) => ({
            structured: { key: args.key, removed: await redis.zrem(this.#k(args.key), ...args.members) },
          }),
        }),
    };
    return [...allowed].map((command) => all[command]());
  }

  // ─── helpers ────────────────────────────────────────────────────────────────────────────────

  /** The results of a pipeline, or the first error in it. */
  async #pipeline(pipeline: ReturnType<Redis["pipeline"]>): Promise<unknown[]> {
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, value]) => {
      if (error) throw error;
      return value;
    });
  }

  /** Runs a cursor command (SSCAN, HSCAN) until `limit` elements or the end, in bounded rounds. */
  async #collect(step: (cursor: string) => Promise<[string, string[]]>, limit: number): Promise<string[]> {
    const found: string[] = [];
    let cursor = "0";
    for (let round = 0; round < MAX_SCAN_ROUNDS; round++) {
      const [next, batch] = await step(cursor);
      found.push(...batch);
      cursor = next;
      if (cursor === "0" || found.length >= limit) break;
    }
    return found;
  }

  #refused(tool: string, error: Error): CallToolResult {
    const message = this.#redact(error.message);
    const code = /^[A-Z]+/.exec(message)?.[0];
    let advice = "";
    if (code === "WRONGTYPE") {
      const readers = Object.entries(READER_OF)
        .map(([type, reader]) => `${type}: ${reader}`)
        .join(", ");
      advice = ` The key holds another type of value; call the type tool, then the tool for that type (${readers}).`;
    } else if (code === "NOPERM") {
      advice = " The Redis user in the backend's url lacks the permission; an operator can change its ACL.";
    }
    return {
      content: [
        {
          type: "text",
          text: `Redis refused tool "${tool}" of backend "${this.name}": ${message}.${advice}`,
        },
      ],
      isError: true,
      _meta: {
        "switchboard/error": {
          code: "backend_error",
          server: this.name,
          tool,
          ...(code ? { redisError: code } : {}),
        },
      },
    };
  }

  #unknownTool(tool: string): GatewayError {
    const isWrite = (REDIS_WRITE_COMMANDS as readonly string[]).includes(tool);
    const why = !isWrite
      ? ""
      : this.readOnly
        ? ` It writes, and this backend is read-only: an operator can set readOnly: false and list "${tool}" in allowCommands.`
        : ` It writes, and "${tool}" is not in this backend's allowCommands.`;
    return new GatewayError(
      "unknown_tool",
      `Redis backend "${this.name}" has no tool "${tool}".${why} Its tools are ${this.#tools.map((t) => t.name).join(", ")}.`,
      { data: { server: this.name, tool } },
    );
  }

  #unavailable(tool: string): GatewayError {
    return new GatewayError(
      "backend_unavailable",
      `Redis backend "${this.name}" cannot run tool "${tool}": ${this.#where} is not connected ` +
        `(${this.#lastError || this.#redis.status}). Check that Redis is up and the url is right; ` +
        "Switchboard reconnects by itself.",
      { data: { server: this.name, tool } },
    );
  }

  #translate(error: unknown, tool: string, signal: AbortSignal): unknown {
    if (error instanceof GatewayError) return error;
    if (signal.aborted) {
      const reason = signal.reason;
      if (reason instanceof GatewayError) return reason;
      return new GatewayError(
        "cancelled",
        `The call to tool "${tool}" of Redis backend "${this.name}" was cancelled.`,
        {
          data: { server: this.name, tool },
        },
      );
    }
    const reason = this.#redact(describeError(error));
    if (/timed out/i.test(reason)) {
      return new GatewayError(
        "timeout",
        `Redis backend "${this.name}" did not answer tool "${tool}" within ${this.#config.commandTimeoutMs} ms ` +
          "(commandTimeoutMs). Redis may be overloaded; Switchboard replaces the connection.",
        { cause: error, data: { server: this.name, tool } },
      );
    }
    return new GatewayError(
      "backend_unavailable",
      `Redis backend "${this.name}" failed during tool "${tool}": ${this.#where} (${reason}). ` +
        "Switchboard reconnects by itself; try again shortly.",
      { cause: error, data: { server: this.name, tool } },
    );
  }

  #redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) if (out.includes(secret)) out = out.split(secret).join("***");
    return out;
  }
}

/** host:port/db, never the password. */
function describeRedis(url: string): string {
  const parsed = new URL(url);
  const db = parsed.pathname.replace(/^\//, "") || "0";
  return `Redis at ${parsed.hostname}:${parsed.port || "6379"}/${db}`;
}

/** The password, raw and as written in the URL, and the URL itself: never to appear in a message. */
function secretsOf(url: string): string[] {
  const secrets = [url];
  if (!URL.canParse(url)) return secrets;
  const { password } = new URL(url);
  if (password.length >= 4) {
    secrets.push(password);
    try {
      secrets.push(decodeURIComponent(password));
    } catch {
      // A malformed escape: the raw form is already covered.
    }
  }
  return secrets;
}
