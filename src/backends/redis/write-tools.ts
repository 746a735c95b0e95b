/**
 * The Redis backend's write tools: one per allowed command (`set`, `del`, `expire`, …), offered only
 * when the config says `readOnly: false` and lists the command in `allowCommands`. Separate tools
 * rather than one generic `command` tool, because each then has its own schema and annotations (a
 * model sees that `del` is destructive and `sadd` is not; the gateway's policies can treat them
 * apart), and because the backend must know which arguments are keys to keep `keyPrefix` containment:
 * a generic command gives no such guarantee (EVAL, MIGRATE, SORT … STORE name keys anywhere in their
 * arguments).
 */
import { z } from "zod";
import { defineTool, type ToolSpec } from "../base.ts";
import type { RedisWriteCommand } from "./config.ts";
import { type Keyspace, key, keys, members, type Output, scopeNote } from "./keyspace.ts";

export function writeTools(ks: Keyspace): ToolSpec<Output>[] {
  const { redis, config } = ks;
  if (config.readOnly) return [];
  const { maxItems } = config;
  const allowed = new Set<RedisWriteCommand>(config.allowCommands);
  const scope = scopeNote(config);
  const write = (destructive: boolean, idempotent: boolean) =>
    ({
      readOnlyHint: false,
      destructiveHint: destructive,
      idempotentHint: idempotent,
      openWorldHint: false,
    }) as const;
  const keyed = z.object({ key: z.string() });

  const all: Record<RedisWriteCommand, () => ToolSpec<Output>> = {
    set: () =>
      defineTool({
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
          const reply = await redis.call("SET", ks.key(args.key), args.value, ...options);
          return { structured: { key: args.key, written: reply === "OK" } };
        },
      }),
    del: () =>
      defineTool({
        name: "del",
        title: "Delete keys",
        description: `Deletes keys, whatever they hold. Returns how many existed.${scope}`,
        args: z.strictObject({ keys: keys(maxItems) }),
        output: z.object({ deleted: z.number().int() }),
        annotations: write(true, true),
        run: async (args) => ({
          structured: { deleted: await redis.del(...args.keys.map((k) => ks.key(k))) },
        }),
      }),
    expire: () =>
      defineTool({
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
            applied: (await redis.expire(ks.key(args.key), args.seconds)) === 1,
          },
        }),
      }),
    persist: () =>
      defineTool({
        name: "persist",
        title: "Remove a key's expiry",
        description: `Removes the expiry of a key, so that it stays until deleted.${scope}`,
        args: z.strictObject({ key: key() }),
        output: keyed.extend({ applied: z.boolean() }),
        annotations: write(false, true),
        run: async (args) => ({
          structured: { key: args.key, applied: (await redis.persist(ks.key(args.key))) === 1 },
        }),
      }),
    incr: () =>
      defineTool({
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
          structured: { key: args.key, value: await redis.incrby(ks.key(args.key), args.by) },
        }),
      }),
    hset: () =>
      defineTool({
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
          structured: { key: args.key, added: await redis.hset(ks.key(args.key), args.fields) },
        }),
      }),
    hdel: () =>
      defineTool({
        name: "hdel",
        title: "Delete fields of a hash",
        description: `Deletes fields of a hash. Returns how many existed.${scope}`,
        args: z.strictObject({ key: key(), fields: members(maxItems, "The field names.") }),
        output: keyed.extend({ removed: z.number().int() }),
        annotations: write(true, true),
        run: async (args) => ({
          structured: { key: args.key, removed: await redis.hdel(ks.key(args.key), ...args.fields) },
        }),
      }),
    lpush: () =>
      defineTool({
        name: "lpush",
        title: "Prepend to a list",
        description: `Inserts values at the head of a list, in order (the last given ends up first). Returns the new length.${scope}`,
        args: z.strictObject({ key: key(), values: members(maxItems, "The values.") }),
        output: keyed.extend({ length: z.number().int() }),
        annotations: write(false, false),
        run: async (args) => ({
          structured: { key: args.key, length: await redis.lpush(ks.key(args.key), ...args.values) },
        }),
      }),
    rpush: () =>
      defineTool({
        name: "rpush",
        title: "Append to a list",
        description: `Appends values at the tail of a list, in order. Returns the new length.${scope}`,
        args: z.strictObject({ key: key(), values: members(maxItems, "The values.") }),
        output: keyed.extend({ length: z.number().int() }),
        annotations: write(false, false),
        run: async (args) => ({
          structured: { key: args.key, length: await redis.rpush(ks.key(args.key), ...args.values) },
        }),
      }),
    sadd: () =>
      defineTool({
        name: "sadd",
        title: "Add members to a set",
        description: `Adds members to a set. Returns how many were new.${scope}`,
        args: z.strictObject({ key: key(), members: members(maxItems, "The members.") }),
        output: keyed.extend({ added: z.number().int() }),
        annotations: write(false, true),
        run: async (args) => ({
          structured: { key: args.key, added: await redis.sadd(ks.key(args.key), ...args.members) },
        }),
      }),
    srem: () =>
      defineTool({
        name: "srem",
        title: "Remove members from a set",
        description: `Removes members from a set. Returns how many were there.${scope}`,
        args: z.strictObject({ key: key(), members: members(maxItems, "The members.") }),
        output: keyed.extend({ removed: z.number().int() }),
        annotations: write(true, true),
        run: async (args) => ({
          structured: { key: args.key, removed: await redis.srem(ks.key(args.key), ...args.members) },
        }),
      }),
    zadd: () =>
      defineTool({
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
            added: await redis.zadd(ks.key(args.key), ...args.members.flatMap((m) => [m.score, m.member])),
          },
        }),
      }),
    zrem: () =>
      defineTool({
        name: "zrem",
        title: "Remove members from a sorted set",
        description: `Removes members from a sorted set. Returns how many were there.${scope}`,
        args: z.strictObject({ key: key(), members: members(maxItems, "The members.") }),
        output: keyed.extend({ removed: z.number().int() }),
        annotations: write(true, true),
        run: async (args) => ({
          structured: { key: args.key, removed: await redis.zrem(ks.key(args.key), ...args.members) },
        }),
      }),
  };
  return [...allowed].map((command) => all[command]());
}
