/**
 * Bytes as MCP content, for the built-ins that hand files and HTTP bodies to a model: whether bytes
 * are text, and the block binary bytes travel in.
 */
import type { CallToolResult } from "../core/types.ts";

type ContentBlock = CallToolResult["content"][number];

/** True for bytes that decode as UTF-8 and hold no NUL (which text practically never has). */
export function isUtf8Text(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Binary bytes (already base64) as the block a client can show: an image or audio block for those
 * media types, else an embedded resource named by `uri`.
 */
export function binaryBlock(data: string, mimeType: string, uri: string): ContentBlock {
  if (mimeType.startsWith("image/")) return { type: "image", data, mimeType };
  if (mimeType.startsWith("audio/")) return { type: "audio", data, mimeType };
  return { type: "resource", resource: { uri, mimeType, blob: data } };
}
