/**
 * The config primitives the built-in backends' schemas share (each backend's own schema is the
 * `config.ts` in its folder). Objects there are strict, like the rest of the config: a misspelt key is
 * an error with its path. Cross-field checks are refinements on the object itself (not transforms),
 * so each schema can still be extended and used as a member of a discriminated union on `type`.
 *
 * Secrets: URLs may hold passwords, so no message here ever repeats a URL.
 */
import { z } from "zod";

export const positiveInt = () => z.number().int().positive();

/** A URL with one of `protocols`; the message names the protocols, never the value (it may hold a password). */
export function urlWith(protocols: readonly string[], example: string) {
  const allowed = (value: string) => URL.canParse(value) && protocols.includes(new URL(value).protocol);
  const error = `must be a ${protocols.map((p) => `${p}//`).join(" or ")} URL, e.g. ${example}`;
  return z.string().refine(allowed, { error });
}
