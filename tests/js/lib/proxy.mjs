// A TCP proxy in front of the server, so a test can cut every connection at once: what a
// lost network does to any transport, long-polling included.
import net from "node:net";

export async function startProxy(targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise((res) => server.listen(0, "127.0.0.1", res));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Destroys every open connection, both ways, without a goodbye. */
    cutAll() {
      for (const s of sockets) s.destroy();
    },
    close() {
      this.cutAll();
      return new Promise((res) => server.close(res));
    },
  };
}
