/**
 * The `policies` block of the config, shared by the top level, each server and each tool rule.
 * Placeholder until the call pipeline lands: accepts only an empty object.
 */
import { z } from "zod";

export const policySetSchema = z.strictObject({});
export type PolicySet = z.infer<typeof policySetSchema>;
