/**
 * The config primitives the built-in backends' schemas build on (each backend's own schema is the
 * `config.ts` in its folder). They are config/primitives.ts's, re-exported: one definition of each
 * kind of value for the whole config, so a backend checks a URL or a duration, and explains it when
 * it is wrong, the way every other block does. Objects there are strict, like the rest of the config:
 * a misspelt key is an error with its path. Cross-field checks are refinements on the object itself
 * (not transforms), so each schema can still be extended and used as a member of a discriminated
 * union on `type`.
 *
 * Secrets: URLs may hold passwords, so no message there ever repeats a URL.
 */
export {
  durationMs,
  headerMap,
  hmacSecret,
  httpUrl,
  nonEmpty,
  nonNegativeInt,
  positiveInt,
  postgresUrl,
  redisUrl,
  toolName,
} from "../config/primitives.ts";
