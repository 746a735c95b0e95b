/**
 * The Redis backend's read tools, one per question a caller asks of Redis: get, mget, hgetall,
 * lrange, smembers, zrange, scan, ttl and type. Every one is bounded: collections return at most
 * `maxItems` elements (big sets and hashes are read with SSCAN/HSCAN rather than SMEMBERS/HGETALL,
 * ranges are clamped before they are asked for), strings at most `maxValueBytes`, and scan never walks
 * the whole keyspace in one call. A cut result says `truncated: true`.
 */
import { z } from "zod";
import { defineTool, type ToolSpec } from "../base.ts";
import {
  clampRange,
  escapeGlob,
  type Keyspace,
  key,
  keys,
  MAX_SCAN_ROUNDS,
  type Output,
  scopeNote,
} from "./keyspace.ts";

export function readTools(ks: Keyspace): ToolSpec<Output>[] {
  const { redis, config } = ks;
  const { maxItems } = config;
  const read = { readOnlyHint: true, openWorldHint: false } as const;
  const scope = scopeNote(config);

  return [
    defineTool({
      name: "get",
      title: "Get a string value",
      description: `Returns the string value of a key (null when the key does not exist).${scope}`,
      args: z.strictObject({ key: key() }),
      output: z.object({ key: z.string(), value: z.string().nullable(), truncated: z.boolean() }),
      annotations: read,
      run: async (args) => {
        const stored = ks.key(args.key);
        // EXISTS tells a missing key from an empty string; GETRANGE reads no more than the limit.
        const [exists, length, head] = await ks.pipeline(
          redis
            .pipeline()
            .exists(stored)
            .strlen(stored)
            .getrange(stored, 0, config.maxValueBytes - 1),
        );
        if (exists === 0) return { structured: { key: args.key, value: null, truncated: false } };
        const cut = (length as number) > config.maxValueBytes;
        return {
          structured: { key: args.key, value: head as string, truncated: cut },
          notes: cut ? [ks.cutNote(`the value is ${length} bytes long`)] : [],
        };
      },
    }),
    defineTool({
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
        const values = await redis.mget(...args.keys.map((k) => ks.key(k)));
        let cut = false;
        const out = args.keys.map((k, i) => {
          const value = values[i] ?? null;
          if (value === null) return { key: k, value };
          const clipped = ks.clip(value);
          cut ||= clipped.cut;
          return { key: k, value: clipped.value };
        });
        return {
          structured: { values: out, truncated: cut },
          notes: cut ? [ks.cutNote("some values were cut at maxValueBytes")] : [],
        };
      },
    }),
    defineTool({
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
        const stored = ks.key(args.key);
        const size = await redis.hlen(stored);
        let pairs: string[];
        if (size <= maxItems) {
          pairs = Object.entries(await redis.hgetall(stored)).flat();
        } else {
          pairs = await ks.collect(
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
          const clipped = ks.clip(pairs[i + 1] as string);
          cut ||= clipped.cut;
          fields[name] = clipped.value;
          kept++;
        }
        return {
          structured: { key: args.key, size, fields, truncated: cut },
          notes: cut ? [ks.cutNote(`the hash has ${size} fields`)] : [],
        };
      },
    }),
    defineTool({
      name: "lrange",
      title: "Read a range of a list",
      description:
        `Returns the elements of a list from start to stop, both included (0 is the first, -1 the last); ` +
        `at most ${maxItems} per call.${scope}`,
      args: z.strictObject({
        key: key(),
        start: z.number().int().default(0).describe("First index; negative counts from the end. Default 0."),
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
        const stored = ks.key(args.key);
        const length = await redis.llen(stored);
        const { from, to } = clampRange(length, args.start, args.stop);
        const last = Math.min(to, from + maxItems - 1);
        const items = last < from ? [] : await redis.lrange(stored, from, last);
        let cut = last < to;
        const clipped = items.map((item) => {
          const c = ks.clip(item);
          cut ||= c.cut;
          return c.value;
        });
        return {
          structured: { key: args.key, length, start: from, items: clipped, truncated: cut },
          notes: cut ? [ks.cutNote(`the range holds ${to - from + 1} elements`)] : [],
        };
      },
    }),
    defineTool({
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
        const stored = ks.key(args.key);
        const size = await redis.scard(stored);
        const found =
          size <= maxItems
            ? await redis.smembers(stored)
            : await ks.collect(
                (cursor) => redis.sscan(stored, cursor, "COUNT", Math.min(maxItems, 1_000)),
                maxItems,
              );
        // SSCAN may return a member twice; a set's members are unique.
        const unique = [...new Set(found)].slice(0, maxItems);
        let cut = size > unique.length;
        const out = unique.map((member) => {
          const c = ks.clip(member);
          cut ||= c.cut;
          return c.value;
        });
        return {
          structured: { key: args.key, size, members: out, truncated: cut },
          notes: cut ? [ks.cutNote(`the set has ${size} members`)] : [],
        };
      },
    }),
    defineTool({
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
        withScores: z.boolean().default(false).describe("Return each member with its score. Default false."),
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
        const stored = ks.key(args.key);
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
          notes: cut ? [ks.cutNote(`the range holds ${to - from + 1} members`)] : [],
        };
      },
    }),
    defineTool({
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
        const pattern = escapeGlob(config.keyPrefix) + args.match;
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
          structured: { cursor, done: cursor === "0", keys: found.map((k) => ks.unprefixed(k)) },
        };
      },
    }),
    defineTool({
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
        const ms = await redis.pttl(ks.key(args.key));
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
    defineTool({
      name: "type",
      title: "Type of a key",
      description: `Returns the type of the value at a key: string, list, set, zset, hash, stream, or none when it does not exist.${scope}`,
      args: z.strictObject({ key: key() }),
      output: z.object({ key: z.string(), type: z.string() }),
      annotations: read,
      run: async (args) => ({ structured: { key: args.key, type: await redis.type(ks.key(args.key)) } }),
    }),
  ];
}
