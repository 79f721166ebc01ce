export { ParleyClient } from "./client.js";
export type { HistoryOptions, ParleyClientOptions, RegisterInput, SendOptions } from "./client.js";
export { ParleyError, ParleySocketError, parseRetryAfter } from "./errors.js";
export type { AuthMode, RetryOptions } from "./http.js";
export { newClientId } from "./ids.js";
export { Backoff } from "./backoff.js";
export { ParleySocket } from "./socket.js";
export type {
  Disconnect,
  SocketEvents,
  SocketOptions,
  SocketState,
  WebSocketConstructor,
  WebSocketLike,
} from "./socket.js";
export type * from "./types.js";
