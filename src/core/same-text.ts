/**
 * Compares a secret a caller presented with the one expected, in time that does not depend on where
 * they differ. Strings are compared as they are written, not as what they decode to: decoders skip
 * characters they do not know and unused bits, so two spellings could otherwise pass as one.
 */
import { timingSafeEqual } from "node:crypto";

export function sameText(given: string | null | undefined, expected: string): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(given, "utf8");
  const b = Buffer.from(expected, "utf8");
  // Lengths compared first: timingSafeEqual throws on unequal lengths, and the length is no secret.
  return a.length === b.length && timingSafeEqual(a, b);
}
