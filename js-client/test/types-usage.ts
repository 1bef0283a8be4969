// Compiled (not run) by `npm run check-types`: the hand-written types of src/realtime.d.ts
// accept the API of docs/js-client.md and refuse what it does not allow.
import Realtime, {
  Channel, type CommandEnvelope, type HistoryAck, type MembershipAck, type MessageEnvelope, RealtimeError,
} from "realtime-client";

async function fiveLines(url: string, token?: string): Promise<void> {
  const rt = Realtime.connect({ url, identity: "alice", token, subscription: ["chat"] });
  rt.createChannel("chat", {
    onReceive(env) { const d: unknown = env.data; const who: string | null = env.identity; void d; void who; },
    onSubscribe(env) { const n: number = env.data.count; void n; },
    onUnsubscribe(env) { const n: number = env.data.count; void n; },
    customMethod(env: CommandEnvelope<{ x: number }>) { const x: number = env.data.options.x; void x; },
  });
  const ack: MembershipAck = await rt.subscribe("chat");
  const count: number = ack.count;
  void count;
  await rt.publish("chat", { msg: "hi" });
  await rt.channels.chat.trigger("customMethod", { x: 1 });
  await rt.unsubscribe("chat");
  rt.close();
}

function events(rt: Realtime): void {
  rt.on("connect", () => {})
    .on("reconnect", ({ recovered, resubscribed }) => { const r: boolean = recovered; const s: string[] = resubscribed; void r; void s; })
    .on("disconnect", (reason: string) => { void reason; })
    .on("error", (err) => { const code: RealtimeError["code"] = err.code; void code; })
    .on("state", (state) => { if (state === "reconnecting") return; });
  const ch: Channel = rt.createChannel("x");
  const n: number = ch.count;
  const c: boolean = rt.connected;
  void n; void c;
  const e: Error = new RealtimeError("x", { code: "timeout" });
  void e;
  const m: MessageEnvelope<string> = { type: "message", channel: "c", identity: null, timestamp: "t", data: "d" };
  void m;
  void rt.history("chat", { limit: 10 }).then((h: HistoryAck) => {
    const last: string = h.messages.length ? h.messages[h.messages.length - 1].offset : h.offset;
    const done: boolean = h.complete && !h.more;
    void done;
    return ch.history({ since: last });
  });
  // @ts-expect-error: an offset is a string
  void rt.history("chat", { since: 5 });
  // @ts-expect-error: not an event of the client
  rt.on("message", () => {});
  // @ts-expect-error: a channel name is a string
  void rt.subscribe(42);
  // @ts-expect-error: unknown option
  Realtime.connect({ url: "x", identiy: "typo" });
}

void fiveLines;
void events;
