// Types of the Realtime client (src/realtime.js), written by hand.
import type { ManagerOptions, Socket, SocketOptions } from "socket.io-client";

/**
 * What the server delivers: every `message` event carries one envelope
 * (docs/design.md#server-events).
 */
export interface MessageEnvelope<T = unknown> {
  type: "message";
  channel: string;
  /** The publisher's identity; null for anonymous connections and the server. */
  identity: string | null;
  /** RFC 3339 UTC with milliseconds, e.g. "2026-11-26T01:02:03.456Z". */
  timestamp: string;
  data: T;
}

export interface CommandEnvelope<O = unknown> {
  type: "command";
  channel: string;
  identity: string | null;
  timestamp: string;
  data: {
    command: string;
    options: O;
    /** Members of the channel after the change (onSubscribe and onUnsubscribe only). */
    count?: number;
  };
}

export type Envelope = MessageEnvelope | CommandEnvelope;

/** `onReceive` gets messages; `onSubscribe`, `onUnsubscribe` and custom names get commands. */
export interface ChannelHandlers {
  onReceive?(this: Channel, envelope: MessageEnvelope): unknown;
  onSubscribe?(this: Channel, envelope: CommandEnvelope<null> & { data: { count: number } }): unknown;
  onUnsubscribe?(this: Channel, envelope: CommandEnvelope<null> & { data: { count: number } }): unknown;
  [command: string]: ((this: Channel, envelope: any) => unknown) | undefined;
}

export interface ConnectOptions {
  /** Server URL, e.g. "http://localhost:8001". In a browser, defaults to the page's origin. */
  url?: string;
  /** Sent in the Socket.IO auth payload; all connections of one identity are one member. */
  identity?: string;
  /** A JWT proving the identity, when the server requires one. */
  token?: string;
  /** Channels to subscribe to as soon as the client connects. */
  subscription?: string[];
  /** Socket.IO path on the server; default "/socket.io/". */
  path?: string;
  /** Engine.IO transports to use, in order; default ["polling", "websocket"]. */
  transports?: ("polling" | "websocket" | "webtransport")[];
  /**
   * How long a request (subscribe, unsubscribe, publish, trigger, history) waits for the server's
   * answer, including the time it waits for a connection; default 10000 ms.
   */
  requestTimeout?: number;
  /** Any other socket.io-client option (reconnection delays, extra headers, ...). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
}

/** The answer to subscribe and unsubscribe. */
export interface MembershipAck {
  ok: true;
  channel: string;
  /** Members of the channel after the change. */
  count: number;
}

/** A kept message: the envelope members received live, with its offset. */
export type KeptEnvelope = Envelope & {
  /** Increasing per server; pass the last one seen as `since`. */
  offset: string;
};

export interface HistoryOptions {
  /** Only what came after this offset (oldest first); absent: the newest messages. */
  since?: string;
  /** Most messages in the answer, 1 to 1000; default 100. */
  limit?: number;
}

/** The answer to history(). */
export interface HistoryAck {
  ok: true;
  channel: string;
  /** Oldest first. */
  messages: KeptEnvelope[];
  /** The server's offset when it answered: the `since` of the next call. */
  offset: string;
  /** False when messages after `since` are no longer kept (count, age, or a restart). */
  complete: boolean;
  /** The limit left kept messages out: newer ones after `since`, older ones without it. */
  more: boolean;
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";

export type RealtimeErrorCode =
  | "refused"
  | "server"
  | "timeout"
  | "disconnected"
  | "closed"
  | "connect_error"
  | "no_handler"
  | "handler"
  | "invalid";

export interface RealtimeErrorDetails {
  code: RealtimeErrorCode;
  channel?: string;
  envelope?: Envelope | Record<string, unknown>;
  cause?: unknown;
  fatal?: boolean;
  data?: unknown;
}

export class RealtimeError extends Error {
  constructor(message: string, details: RealtimeErrorDetails);
  name: "RealtimeError";
  code: RealtimeErrorCode;
  /** The channel the error is about, if any. */
  channel?: string;
  /** The envelope that could not be handled (no_handler, handler, server). */
  envelope?: Envelope | Record<string, unknown>;
  /** connect_error only: true when the client stopped trying. */
  fatal?: boolean;
  /** The server's whole answer (refused) or the CONNECT_ERROR data (connect_error). */
  data?: unknown;
  cause?: unknown;
}

export class Channel {
  readonly client: Realtime;
  readonly name: string;
  handlers: ChannelHandlers;
  /** True from subscribe() until unsubscribe(): what a reconnect restores. */
  subscribed: boolean;
  /** Members of the channel as last told by the server. */
  count: number;
  subscribe(): Promise<MembershipAck>;
  unsubscribe(): Promise<MembershipAck>;
  publish(data: unknown): Promise<void>;
  history(options?: HistoryOptions): Promise<HistoryAck>;
  /** Sends a custom command to every member; reserved names are refused. */
  trigger(command: string, options?: unknown): Promise<void>;
}

export interface ReconnectInfo {
  /** True when the server restored the session (no message lost, nothing to resubscribe). */
  recovered: boolean;
  /** Channels subscribed again (empty when recovered). */
  resubscribed: string[];
}

export interface RealtimeEvents {
  connect: () => void;
  reconnect: (info: ReconnectInfo) => void;
  disconnect: (reason: string) => void;
  error: (error: RealtimeError) => void;
  state: (state: ConnectionState) => void;
}

export class Realtime {
  static connect(options?: ConnectOptions): Realtime;
  constructor(options?: ConnectOptions);
  readonly channels: Record<string, Channel>;
  readonly identity: string | null;
  readonly url: string | null;
  readonly state: ConnectionState;
  readonly connected: boolean;
  requestTimeout: number;
  /** The underlying socket.io-client socket. */
  readonly socket: Socket;
  createChannel(name: string, handlers?: ChannelHandlers): Channel;
  subscribe(name: string): Promise<MembershipAck>;
  unsubscribe(name: string): Promise<MembershipAck>;
  publish(name: string, data: unknown): Promise<void>;
  /** The channel's last messages the server kept (needs `[Messaging] history-size`). */
  history(name: string, options?: HistoryOptions): Promise<HistoryAck>;
  trigger(name: string, command: string, options?: unknown): Promise<void>;
  /** Resolves when connected; rejects on the next failed attempt, on close, or after `timeout` ms. */
  ready(timeout?: number): Promise<void>;
  on<E extends keyof RealtimeEvents>(event: E, fn: RealtimeEvents[E]): this;
  off<E extends keyof RealtimeEvents>(event: E, fn: RealtimeEvents[E]): this;
  close(): void;
}

export default Realtime;
