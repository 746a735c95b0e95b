/** Starting a `node:http` server on a host and port, and the URL it then answers at. */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Listens on `host:port` (0: any free port) and resolves with `http://host:port`; rejects if it cannot. */
export async function listenOn(server: Server, port: number, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${shown}:${address.port}`;
}
