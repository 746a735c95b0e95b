/**
 * The Redis backend's config block (`type: "redis"` under `backends:`). The extensions every server
 * shares (enabled, prefix, tools, timeoutMs, policies) are merged in by config/schema.ts.
 */
import { z } from "zod";
import { durationMs, positiveInt, redisUrl } from "../config.ts";

/**
 * Write commands a Redis backend can be allowed, each exposed as a tool of the same name when listed
 * in `allowCommands` and `readOnly` is false. A closed list: each has its own tool schema, and the
 * backend knows which of its arguments are keys, which keyPrefix containment depends on.
 */
export const REDIS_WRITE_COMMANDS = [
  "set",
  "del",
  "expire",
  "persist",
  "incr",
  "hset",
  "hdel",
  "lpush",
  "rpush",
  "sadd",
  "srem",
  "zadd",
  "zrem",
] as const;

export type RedisWriteCommand = (typeof REDIS_WRITE_COMMANDS)[number];

export const redisBackendSchema = z
  .strictObject({
    type: z.literal("redis"),
    /** redis://[user:password@]host[:port][/db], or rediss:// for TLS. Required. */
    url: redisUrl(),
    /**
     * The backend sees only keys under this prefix: tools take and return keys without it, and SCAN
     * patterns match after it. Default "" (every key of the database).
     */
    keyPrefix: z.string().default(""),
    /** Only the read tools are offered. Set false, and list commands in allowCommands, for writes. Default true. */
    readOnly: z.boolean().default(true),
    /**
     * Write commands offered as tools when readOnly is false, e.g. ["set", "del", "expire"].
     * Default [] (none).
     */
    allowCommands: z
      .array(
        z.enum(REDIS_WRITE_COMMANDS, {
          error: (issue) =>
            `${JSON.stringify(issue.input)} is not a write command Switchboard offers; pick from ${REDIS_WRITE_COMMANDS.join(", ")}`,
        }),
      )
      .default([]),
    /**
     * Elements one call returns at most: members of a set, fields of a hash, list and sorted-set
     * ranges, keys of mget and scan. More are cut off and the result says `truncated: true`.
     * Default 1 000.
     */
    maxItems: positiveInt().max(100_000).default(1_000),
    /** Bytes of one string value returned; longer values are cut and marked truncated. Default 65 536. */
    maxValueBytes: positiveInt().default(65_536),
    /** How long connecting may take, in ms. Default 5 000. */
    connectTimeoutMs: durationMs().default(5_000),
    /** A command unanswered this long fails and the connection is replaced, in ms. Default 5 000. */
    commandTimeoutMs: durationMs().default(5_000),
  })
  .refine((config) => !config.readOnly || config.allowCommands.length === 0, {
    path: ["allowCommands"],
    error: "write commands need readOnly: false; set it, or remove allowCommands",
  });

export type RedisBackendConfig = z.output<typeof redisBackendSchema>;
export type RedisBackendInput = z.input<typeof redisBackendSchema>;
