// The Realtime client: channels, members and commands on top of the stock socket.io-client.
//
// One `Realtime` object owns one Socket.IO connection. It turns the server's events
// (docs/design.md#client-events) into promises, routes every incoming `message` envelope
// (docs/design.md#server-events) to the handlers of its channel, and after a reconnect that
// the server did not recover it subscribes again to every channel it was in.
//
// Requests made while not connected (before the first connection, or while reconnecting)
// wait in a queue of this client, in call order, and are sent once the connection is up and
// the channels are subscribed again; each one fails after `requestTimeout` milliseconds
// without an answer, and at once when the client is closed or the server refuses the
// connection. Nothing is sent twice: a request is either answered, or rejected.

import { io } from "socket.io-client";

/** Command names the server handles itself (docs/design.md#client-events); `trigger` refuses them. */
const RESERVED_COMMANDS = new Set(["init", "subscribe", "unsubscribe", "onSubscribe", "onUnsubscribe"]);
/** Commands the server sends about membership; a channel may leave them without a handler. */
const MEMBERSHIP_COMMANDS = new Set(["onSubscribe", "onUnsubscribe"]);

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Wait before reconnecting when the server itself closed the connection (e.g. a restart). */
const SERVER_DISCONNECT_RETRY_MS = 1_000;

/**
 * An error of this client. `code` says what kind:
 * - `refused`: the server answered `{ok: false, error}`; the message is the server's reason;
 * - `server`: the server sent an error envelope for a request without an answer;
 * - `timeout`: no answer within `requestTimeout`;
 * - `disconnected`: the connection went before the server answered;
 * - `closed`: the client was closed (or the server refused the connection) before sending;
 * - `connect_error`: a connection attempt failed (`fatal` when the client stops trying);
 * - `no_handler`: a message or command arrived for which the channel has no handler;
 * - `handler`: a handler threw (the error is in `cause`);
 * - `invalid`: a bad argument (e.g. an empty channel name).
 */
export class RealtimeError extends Error {
  /**
   * @param {string} message
   * @param {{code: string, channel?: string, envelope?: object, cause?: unknown, fatal?: boolean, data?: unknown}} details
   */
  constructor(message, { code, channel, envelope, cause, fatal, data }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RealtimeError";
    this.code = code;
    if (channel !== undefined) this.channel = channel;
    if (envelope !== undefined) this.envelope = envelope;
    if (fatal !== undefined) this.fatal = fatal;
    if (data !== undefined) this.data = data;
  }
}

/** One channel: its handlers, whether this client wants to be in it, and its member count. */
export class Channel {
  /**
   * @param {Realtime} client
   * @param {string} name
   * @param {Record<string, (envelope: object) => unknown>} handlers
   */
  constructor(client, name, handlers) {
    this.client = client;
    this.name = name;
    this.handlers = { ...handlers };
    /** True from `subscribe()` until `unsubscribe()`: what a reconnect restores. */
    this.subscribed = false;
    /** Members of the channel, as last told by the server (ack or onSubscribe/onUnsubscribe). */
    this.count = 0;
  }

  subscribe() { return this.client.subscribe(this.name); }

  unsubscribe() { return this.client.unsubscribe(this.name); }

  /** @param {unknown} data */
  publish(data) { return this.client.publish(this.name, data); }

  /** @param {{since?: string, limit?: number}} [options] */
  history(options) { return this.client.history(this.name, options); }

  /**
   * Sends a custom command to every member of the channel: they get it as
   * `{type: "command", channel, identity, timestamp, data: {command, options}}`.
   * @param {string} command
   * @param {unknown} [options]
   */
  trigger(command, options) {
    if (typeof command !== "string" || command === "") {
      return Promise.reject(new RealtimeError("a command name must be a non-empty string",
        { code: "invalid", channel: this.name }));
    }
    if (RESERVED_COMMANDS.has(command)) {
      return Promise.reject(new RealtimeError(`"${command}" is a reserved command name`,
        { code: "invalid", channel: this.name }));
    }
    return this.client._request("command", [this.name, command, options === undefined ? null : options],
      this.name).then(() => undefined);
  }
}

/**
 * A connection to a Realtime server. Create one with `Realtime.connect(options)`.
 *
 * Events (`on(event, fn)`): `connect` (first connection), `reconnect` ({recovered, resubscribed}) after
 * every later one, `disconnect` (reason), `error` (a RealtimeError), and `state` (the new
 * `state`: "connecting", "connected", "reconnecting" or "disconnected").
 */
export class Realtime {
  /**
   * @param {import("./realtime.d.ts").ConnectOptions} [options]
   * @returns {Realtime}
   */
  static connect(options = {}) {
    return new Realtime(options);
  }

  /** @param {import("./realtime.d.ts").ConnectOptions} [options] */
  constructor(options = {}) {
    const { url, identity, token, subscription = [], path, transports, requestTimeout, socketOptions = {} } = options;
    if (url === undefined && typeof location === "undefined") {
      throw new RealtimeError("a url is needed outside a browser, e.g. http://localhost:8001", { code: "invalid" });
    }
    /** @type {Record<string, Channel>} */
    this.channels = Object.create(null);
    this.identity = identity ?? null;
    /** "connecting" | "connected" | "reconnecting" | "disconnected" */
    this.state = "connecting";
    this.requestTimeout = requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** Requests waiting for the connection, oldest first. */
    this._queue = [];
    /** Bumped on every connection, so the resubscription of an old one is told apart. */
    this._generation = 0;
    this._everConnected = false;
    this._closed = false;
    this._closeReason = null;
    this._failure = null;
    this._retryTimer = null;

    const auth = {};
    if (identity !== undefined && identity !== null) auth.identity = identity;
    if (token !== undefined && token !== null) auth.token = token;
    const ioOptions = { forceNew: true, ...socketOptions, auth };
    if (path !== undefined) ioOptions.path = path;
    if (transports !== undefined) ioOptions.transports = transports;
    /** The underlying socket.io-client socket. */
    this.socket = url === undefined ? io(ioOptions) : io(url, ioOptions);
    this.url = url ?? null;

    this.socket.on("connect", () => this._onConnect());
    this.socket.on("disconnect", (reason) => this._onDisconnect(reason));
    this.socket.on("connect_error", (err) => this._onConnectError(err));
    this.socket.on("message", (envelope) => this._dispatch(envelope));
    this.socket.io.on("reconnect_failed", () => this._fail(new RealtimeError(
      `cannot reconnect to ${this._where()}: gave up after ${this.socket.io.reconnectionAttempts()} attempts`,
      { code: "connect_error", fatal: true })));

    for (const name of subscription) {
      // A refused connection is reported once, as its own "error"; not again per channel.
      this.subscribe(name).catch((err) => { if (err.code !== "closed") this._emit("error", err); });
    }
  }

  /** Whether the connection is up (requests go out at once). */
  get connected() {
    return this.state === "connected";
  }

  /**
   * Declares a channel and its handlers: `onReceive` for messages, `onSubscribe` and
   * `onUnsubscribe` for members joining and leaving, any other name for that custom command.
   * Calling it again for the same name replaces the handlers. Does not subscribe.
   * @param {string} name
   * @param {Record<string, (envelope: object) => unknown>} [handlers]
   */
  createChannel(name, handlers = {}) {
    checkChannelName(name);
    const existing = this.channels[name];
    if (existing) {
      existing.handlers = { ...handlers };
      return existing;
    }
    const channel = new Channel(this, name, handlers);
    this.channels[name] = channel;
    return channel;
  }

  /**
   * Joins a channel (creating it without handlers if needed). Resolves to the server's answer,
   * `{ok: true, channel, count}`; rejects with a RealtimeError carrying the server's reason.
   * @param {string} name
   */
  subscribe(name) {
    try { checkChannelName(name); } catch (err) { return Promise.reject(err); }
    const channel = this.channels[name] ?? this.createChannel(name);
    channel.subscribed = true;
    return this._request("subscribe", [name], name).then((ack) => {
      if (typeof ack.count === "number") channel.count = ack.count;
      return ack;
    }, (err) => {
      if (err.code === "refused") channel.subscribed = false;
      throw err;
    });
  }

  /**
   * Leaves a channel; the channel and its handlers stay for a later `subscribe`.
   * Resolves to `{ok: true, channel, count}`.
   * @param {string} name
   */
  unsubscribe(name) {
    try { checkChannelName(name); } catch (err) { return Promise.reject(err); }
    const channel = this.channels[name];
    if (channel) channel.subscribed = false;
    return this._request("unsubscribe", [name], name).then((ack) => {
      if (channel && typeof ack.count === "number") channel.count = ack.count;
      return ack;
    });
  }

  /**
   * Sends `data` (any JSON value, or binary) to every member of a channel, this client's
   * identity included. Does not need a subscription. Resolves once the server accepted it.
   * @param {string} name
   * @param {unknown} data
   */
  publish(name, data) {
    try { checkChannelName(name); } catch (err) { return Promise.reject(err); }
    return this._request("publish", [name, data === undefined ? null : data], name).then(() => undefined);
  }

  /**
   * The channel's last messages as the server kept them (`[Messaging] history-size`):
   * `{ok: true, channel, messages, offset, complete, more}`, each message the envelope
   * members received with its `offset`, oldest first. With `since` (an `offset` from an
   * earlier answer or message), only what came after it; `complete` is false when some of
   * that is no longer kept. Needs no subscription, only a token that allows the channel.
   * @param {string} name
   * @param {{since?: string, limit?: number}} [options]
   */
  history(name, options = {}) {
    try { checkChannelName(name); } catch (err) { return Promise.reject(err); }
    const query = { channel: name };
    if (options.since !== undefined && options.since !== null) query.since = String(options.since);
    if (options.limit !== undefined) query.limit = options.limit;
    return this._request("history", [query], name);
  }

  /**
   * Sends a custom command to a channel's members (see `Channel.trigger`).
   * @param {string} name
   * @param {string} command
   * @param {unknown} [options]
   */
  trigger(name, command, options) {
    try { checkChannelName(name); } catch (err) { return Promise.reject(err); }
    const channel = this.channels[name] ?? new Channel(this, name, {});
    return channel.trigger(command, options);
  }

  /**
   * Resolves when the client is connected (at once if it is); rejects when the next
   * connection attempt fails, when the client is closed, or after `timeout` ms.
   * @param {number} [timeout]
   */
  ready(timeout = this.requestTimeout) {
    if (this.state === "connected") return Promise.resolve();
    if (this._closed) return Promise.reject(this._failure ?? this._closedError());
    return new Promise((resolve, reject) => {
      const done = (err) => {
        clearTimeout(timer);
        this.off("connect", ok).off("reconnect", ok).off("error", fail).off("state", closed);
        if (err) reject(err); else resolve();
      };
      const ok = () => done();
      const fail = (err) => { if (err.code === "connect_error") done(err); };
      const closed = (state) => {
        if (state === "disconnected" && this._closed) done(this._failure ?? this._closedError());
      };
      const timer = setTimeout(() => done(new RealtimeError(
        `not connected to ${this._where()} after ${timeout} ms`, { code: "timeout" })), timeout);
      this.on("connect", ok).on("reconnect", ok).on("error", fail).on("state", closed);
    });
  }

  /**
   * Adds a listener: "connect", "disconnect", "reconnect", "error" or "state".
   * @param {string} event
   * @param {Function} fn
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  /** Removes a listener added with `on`. */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  /** Closes the connection for good; waiting requests reject with code "closed". */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._closeReason = "the client was closed";
    clearTimeout(this._retryTimer);
    this._rejectQueue(this._closedError());
    this.socket.disconnect();
    this._setState("disconnected");
  }

  // ------------------------------------------------------------------ internals

  /** Sends `event(...args)` now if connected, else queues it; resolves to an `{ok: true}` ack. */
  _request(event, args, channel) {
    if (this._closed) return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => {
      const entry = { send: null, reject, timer: null };
      const started = Date.now();
      entry.timer = setTimeout(() => {
        this._queue = this._queue.filter((e) => e !== entry);
        reject(new RealtimeError(`${event} ${JSON.stringify(channel)}: no answer within ${this.requestTimeout} ms` +
          (this.state === "connected" ? "" : ` (not connected to ${this._where()})`),
        { code: "timeout", channel }));
      }, this.requestTimeout);
      entry.send = () => {
        clearTimeout(entry.timer);
        const left = Math.max(1, this.requestTimeout - (Date.now() - started));
        this._send(event, args, channel, left).then(resolve, reject);
      };
      if (this.state === "connected" && this._queue.length === 0) entry.send();
      else this._queue.push(entry);
    });
  }

  /** Emits with an ack now; resolves to the ack if `ok`, else rejects with the server's reason. */
  _send(event, args, channel, timeout) {
    return this.socket.timeout(timeout).emitWithAck(event, ...args).then((ack) => {
      if (ack && typeof ack === "object" && ack.ok === true) return ack;
      const reason = ack && typeof ack === "object" && typeof ack.error === "string"
        ? ack.error : `unexpected answer ${JSON.stringify(ack)}`;
      throw new RealtimeError(reason, { code: "refused", channel, data: ack });
    }, (err) => {
      if (this._closed) throw this._closedError();
      const timedOut = /timed out/.test(err.message);
      throw new RealtimeError(timedOut
        ? `${event} ${JSON.stringify(channel)}: no answer within ${timeout} ms`
        : `${event} ${JSON.stringify(channel)}: disconnected before the server answered`,
      { code: timedOut ? "timeout" : "disconnected", channel, cause: err });
    });
  }

  _onConnect() {
    const generation = ++this._generation;
    if (!this._everConnected) {
      this._everConnected = true;
      this._setState("connected");
      this._flushQueue();
      this._emit("connect");
      return;
    }
    const recovered = Boolean(this.socket.recovered);
    const resubscribed = recovered ? [] : Object.values(this.channels).filter((c) => c.subscribed);
    // While the channels are subscribed again, new requests keep waiting in the queue so
    // that they go out after the subscriptions, as they would have without the drop.
    Promise.all(resubscribed.map((channel) =>
      this._send("subscribe", [channel.name], channel.name, this.requestTimeout).then((ack) => {
        if (typeof ack.count === "number") channel.count = ack.count;
      }, (err) => {
        if (generation !== this._generation || this._closed) return;
        if (err.code === "refused") channel.subscribed = false;
        this._emit("error", new RealtimeError(`could not subscribe again to ${JSON.stringify(channel.name)}: ${err.message}`,
          { code: err.code, channel: channel.name, cause: err }));
      }),
    )).then(() => {
      if (generation !== this._generation || this._closed || !this.socket.connected) return;
      this._setState("connected");
      this._flushQueue();
      this._emit("reconnect", { recovered, resubscribed: resubscribed.map((c) => c.name) });
    });
  }

  _onDisconnect(reason) {
    if (this._closed) {
      this._emit("disconnect", reason);
      return;
    }
    if (reason === "io server disconnect") {
      // The server closed this connection on purpose (shutting down, or a client that fell
      // behind); socket.io-client would stay down, but the server is probably coming back.
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => { if (!this._closed) this.socket.connect(); }, SERVER_DISCONNECT_RETRY_MS);
    }
    this._setState(this.socket.active || reason === "io server disconnect" ? "reconnecting" : "disconnected");
    this._emit("disconnect", reason);
  }

  _onConnectError(err) {
    if (this._closed) return;
    const refused = !this.socket.active; // the server answered CONNECT_ERROR: no retry
    const retrying = !refused && this.socket.io.reconnection();
    if (refused) {
      const reason = err && err.message ? err.message : String(err);
      this._fail(new RealtimeError(`connection refused by ${this._where()}: ${reason}`,
        { code: "connect_error", fatal: true, cause: err, data: err && err.data }));
      return;
    }
    const error = new RealtimeError(`cannot connect to ${this._where()}: ${err && err.message ? err.message : err}`,
      { code: "connect_error", fatal: !retrying, cause: err });
    if (!retrying) {
      this._fail(error);
      return;
    }
    if (this._everConnected) this._setState("reconnecting");
    this._emit("error", error);
  }

  /** The client will not connect again: reject what waits, report, and stop. */
  _fail(error) {
    if (this._closed) return;
    this._closed = true;
    this._closeReason = error.message;
    /** Why the client stopped, for `ready()` calls after the fact. */
    this._failure = error;
    clearTimeout(this._retryTimer);
    this._rejectQueue(this._closedError());
    this.socket.disconnect();
    this._setState("disconnected");
    this._emit("error", error);
  }

  _closedError() {
    return new RealtimeError(`not connected: ${this._closeReason}`, { code: "closed" });
  }

  _flushQueue() {
    const queue = this._queue;
    this._queue = [];
    for (const entry of queue) entry.send();
  }

  _rejectQueue(error) {
    const queue = this._queue;
    this._queue = [];
    for (const entry of queue) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }

  /** Routes one `message` envelope from the server to its channel's handler. */
  _dispatch(envelope) {
    if (!envelope || typeof envelope !== "object") {
      this._emit("error", new RealtimeError(`unexpected message from the server: ${JSON.stringify(envelope)}`,
        { code: "no_handler", envelope }));
      return;
    }
    const name = envelope.channel;
    if (envelope.success === false || envelope.type === "error") {
      this._emit("error", new RealtimeError(String(envelope.error ?? "error from the server"),
        { code: "server", channel: name ?? undefined, envelope }));
      return;
    }
    const channel = typeof name === "string" ? this.channels[name] : undefined;
    let handlerName;
    if (envelope.type === "message") {
      handlerName = "onReceive";
    } else if (envelope.type === "command" && envelope.data && typeof envelope.data.command === "string") {
      handlerName = envelope.data.command;
      if (channel && MEMBERSHIP_COMMANDS.has(handlerName) && typeof envelope.data.count === "number") {
        channel.count = envelope.data.count;
      }
    } else {
      this._emit("error", new RealtimeError(`unexpected envelope from the server: ${JSON.stringify(envelope)}`,
        { code: "no_handler", channel: name, envelope }));
      return;
    }
    const handler = channel && Object.prototype.hasOwnProperty.call(channel.handlers, handlerName)
      ? channel.handlers[handlerName] : undefined;
    if (typeof handler !== "function") {
      // Joins and leaves need no handler: the channel's count is kept up to date anyway.
      if (channel && MEMBERSHIP_COMMANDS.has(handlerName)) return;
      const what = !channel ? `channel ${JSON.stringify(name)} was not created`
        : `channel ${JSON.stringify(name)} has no ${handlerName} handler`;
      this._emit("error", new RealtimeError(`${envelope.type} ignored: ${what}`,
        { code: "no_handler", channel: name, envelope }));
      return;
    }
    this._call(handler, channel, envelope);
  }

  /** Calls a handler; what it throws (or rejects with) becomes an "error" event. */
  _call(handler, channel, envelope) {
    const report = (err) => this._emit("error", new RealtimeError(
      `${handler.name || "handler"} of channel ${JSON.stringify(channel.name)} failed: ${err && err.message ? err.message : err}`,
      { code: "handler", channel: channel.name, envelope, cause: err }));
    try {
      const result = handler.call(channel, envelope);
      if (result && typeof result.then === "function") result.then(undefined, report);
    } catch (err) {
      report(err);
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) {
      if (event === "error" && typeof console !== "undefined") console.warn("[realtime]", args[0]);
      return;
    }
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (event !== "error") this._emit("error", new RealtimeError(`a "${event}" listener failed: ${err && err.message}`,
          { code: "handler", cause: err }));
        else if (typeof console !== "undefined") console.error("[realtime] an error listener failed", err);
      }
    }
  }

  _where() {
    return this.url ?? (typeof location !== "undefined" ? location.origin : "the server");
  }
}

function checkChannelName(name) {
  if (typeof name !== "string" || name === "") {
    throw new RealtimeError(`a channel name must be a non-empty string, not ${JSON.stringify(name)}`,
      { code: "invalid" });
  }
}

export default Realtime;
