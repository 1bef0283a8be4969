// A TCP proxy in front of the server, so a test can cut every connection at once: what a
// lost network does to any transport, long-polling included. It can also drop the client's
// side alone, leaving the server's side open and silent: a NAT that forgot the flow.
import net from "node:net";

export async function startProxy(targetPort) {
  let target = targetPort;
  const sockets = new Set();
  // Per connection, the order of the last bytes each way: a request is in flight while
  // the client spoke last.
  const pairs = new Set();
  let seq = 0;
  // While held, the network stays down: new connections are dropped at once.
  let held = false;
  const server = net.createServer((client) => {
    if (held) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    const pair = { up: 0, down: 0, since: 0, get: false, client, upstream, silent: false };
    pairs.add(pair);
    client.on("data", (chunk) => {
      if (pair.up <= pair.down) {
        pair.since = Date.now();
        pair.get = chunk.subarray(0, 4).toString() === "GET ";
      }
      pair.up = ++seq;
    });
    upstream.on("data", () => { pair.down = ++seq; });
    client.on("close", () => pairs.delete(pair));
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => { if (!pair.silent) upstream.destroy(); });
    upstream.on("close", () => client.destroy());
  });
  await new Promise((res) => server.listen(0, "127.0.0.1", res));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Whether a connection carries a GET unanswered for `ms` or more. */
    getInFlight(ms = 0) {
      return [...pairs].some((p) => p.get && p.up > p.down && Date.now() - p.since >= ms);
    },
    /** Sends new connections to another port (a load balancer that picked another node). */
    to(port) {
      target = port;
    },
    /** Keeps the network down (new connections dropped) until `release()`. */
    hold() {
      held = true;
    },
    release() {
      held = false;
    },
    /**
     * Resets every client's connection, and keeps its server side open but silent (never
     * read, never closed): the server sees nothing until its ping timeout.
     */
    dropSilently() {
      for (const p of pairs) {
        p.silent = true;
        p.upstream.unpipe(p.client);
        p.upstream.pause();
        p.client.resetAndDestroy();
      }
    },
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
