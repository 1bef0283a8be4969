// Entry point of the browser bundle (dist/realtime.js): `window.Realtime`, with
// `Realtime.RealtimeError`, `Realtime.Channel` and the bundled `Realtime.io` beside it.
import { io } from "socket.io-client";
import { Channel, Realtime, RealtimeError } from "./realtime.js";

Realtime.RealtimeError = RealtimeError;
Realtime.Channel = Channel;
Realtime.io = io;
globalThis.Realtime = Realtime;
