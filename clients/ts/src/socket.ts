import { Backoff } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ParleySocketError } from "./errors.js";
import type {
  ClientFrame,
  DeliveredFrame,
  MessageFrame,
  ReadFrame,
  ReadyFrame,
  ServerFrame,
  SyncedFrame,
} from "./types.js";

/** What the socket needs of a WebSocket: the browser's, Node 22's, or `ws`. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addEventListener(type: string, listener: (event: any) => void): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * - `connecting`: opening a socket;
 * - `syncing`: `ready` came, the backlog since `since` is arriving;
 * - `live`: `synced` came, frames are live;
 * - `waiting`: dropped, reconnecting after a delay;
 * - `offline`: the browser says it is offline; reconnects when it is back;
 * - `closed`: stopped (by `close()`, or the session ended: 4401).
 */
export type SocketState = "connecting" | "syncing" | "live" | "waiting" | "offline" | "closed";

/** Why a socket went away, and when the next one will be tried. */
export interface Disconnect {
  /** The close code; 4000 for drops the client made itself (see `reason`). */
  code: number;
  reason: string;
  /** Milliseconds until the next try; `null` when there will be none. */
  retryInMs: number | null;
}

export interface SocketEvents {
  /** Every frame, before its own event. */
  frame: ServerFrame;
  ready: ReadyFrame;
  message: MessageFrame;
  delivered: DeliveredFrame;
  read: ReadFrame;
  synced: SyncedFrame;
  state: SocketState;
  disconnect: Disconnect;
  /**
   * The server could not serve the sync token (close 4409): the socket
   * connected again without one, and this fires once that socket is ready.
   * Frames in between were lost: re-read the inbox (and open
   * conversations) over REST now.
   */
  resync: ReadyFrame;
  /** The session ended (close 4401: logged out, expired): the socket stops. */
  unauthorized: Disconnect;
  /** A listener failed, or the server sent an `error` frame. */
  error: unknown;
}

export interface SocketOptions {
  /** Resume after this sync token (the `seq` of the last frame processed). */
  since?: string | undefined;
  /** Acknowledge every message addressed to the user once processed (default true). */
  autoAck?: boolean;
  /** First reconnect delay; it doubles up to `maxDelayMs` (defaults 500 ms, 30 s). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Ping when nothing was heard for this long (default 25 s)... */
  heartbeatMs?: number;
  /** ...and drop the socket if nothing answers within this (default 10 s). */
  heartbeatTimeoutMs?: number;
  /** Follow the browser's online/offline events (default: where they exist). */
  watchNetwork?: boolean;
  /** For tests: the jitter source. */
  random?: () => number;
}

/** What the socket gets from its client. */
export interface SocketTransport {
  url: string;
  /** The token for an `auth` frame; `undefined` when the cookie authenticates. */
  token: () => string | undefined;
  WebSocket: WebSocketConstructor;
}

const OPEN = 1;
/** Acks sent this shortly before a drop may not have arrived: sent again. */
const ACK_RESEND_WINDOW_MS = 10_000;
/** The soonest a socket is tried again after 4429 (too many sockets). */
const TOO_MANY_DELAY_MS = 10_000;
/** Close code for drops the client makes (heartbeat, a failed listener, offline). */
const CLIENT_DROP = 4000;

interface NetworkEvents {
  addEventListener(type: "online" | "offline", l: () => void): void;
  removeEventListener(type: "online" | "offline", l: () => void): void;
}

function browserNetwork(): { target: NetworkEvents; online: () => boolean } | undefined {
  const g = globalThis as { window?: NetworkEvents; navigator?: { onLine?: boolean } };
  if (!g.window || typeof g.window.addEventListener !== "function" || !g.navigator) return undefined;
  return { target: g.window, online: () => g.navigator?.onLine !== false };
}

/**
 * A socket that stays connected: it reconnects with exponential backoff
 * and jitter, resumes from the `seq` of the last frame the app processed
 * (so every message and receipt arrives exactly once across drops), and
 * acknowledges the messages addressed to the user.
 *
 * Frames are handed to listeners one at a time; a listener may return a
 * promise, and the next frame waits for it. Only then does `since` move
 * past the frame and is the message acknowledged. A listener that throws
 * drops the socket: the frame comes again on the next one.
 */
export class ParleySocket extends Emitter<SocketEvents> {
  #since: string | undefined;
  #state: SocketState = "closed";
  #userId: string | undefined;
  #ws: WebSocketLike | undefined;
  /** Each socket opened gets a number; events of older ones are ignored. */
  #generation = 0;
  /** A socket whose frames are no longer processed (a listener failed). */
  #failed = -1;
  /** Whether `ready` came on the current socket (acks may go). */
  #readyOn = -1;
  #queue: Promise<void> = Promise.resolve();
  #backoff: Backoff;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #lastHeard = 0;
  #stopped = true;
  #resyncPending = false;
  #pendingAcks = new Set<string>();
  #sentAcks: { id: string; at: number }[] = [];
  #network: ReturnType<typeof browserNetwork>;
  readonly #opts: Required<Omit<SocketOptions, "since" | "random">>;

  constructor(
    private readonly transport: SocketTransport,
    options: SocketOptions = {},
  ) {
    super();
    this.#since = options.since;
    this.#opts = {
      autoAck: options.autoAck ?? true,
      initialDelayMs: options.initialDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      heartbeatMs: options.heartbeatMs ?? 25_000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 10_000,
      watchNetwork: options.watchNetwork ?? browserNetwork() !== undefined,
    };
    this.#backoff = new Backoff(this.#opts.initialDelayMs, this.#opts.maxDelayMs, options.random);
    this.#network = this.#opts.watchNetwork ? browserNetwork() : undefined;
  }

  /** The sync token to resume from: the `seq` of the last frame processed. */
  get since(): string | undefined {
    return this.#since;
  }

  get state(): SocketState {
    return this.#state;
  }

  /** The user this socket is for, once `ready` came. */
  get userId(): string | undefined {
    return this.#userId;
  }

  /** Starts connecting (and keeps reconnecting until `close`). */
  connect(): this {
    if (!this.#stopped) return this;
    this.#stopped = false;
    this.#network?.target.addEventListener("online", this.#onOnline);
    this.#network?.target.addEventListener("offline", this.#onOffline);
    void this.#open();
    return this;
  }

  /** Stops for good: closes the socket and cancels any reconnect. */
  close(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#network?.target.removeEventListener("online", this.#onOnline);
    this.#network?.target.removeEventListener("offline", this.#onOffline);
    this.#clearTimer();
    this.#stopHeartbeat();
    const ws = this.#ws;
    this.#ws = undefined;
    this.#generation++;
    try {
      ws?.close(1000, "closed by the client");
    } catch {
      // already closing
    }
    this.#setState("closed");
  }

  /**
   * Acknowledges a message addressed to the user (done by itself unless
   * `autoAck` is false). Acks that cannot go now go on the next socket;
   * the server records each message's delivery once however often it is
   * acknowledged.
   */
  ack(messageId: string): void {
    const ws = this.#ws;
    if (ws && ws.readyState === OPEN && this.#readyOn === this.#generation) {
      this.#send(ws, { type: "ack", message_id: messageId });
      const now = Date.now();
      this.#sentAcks.push({ id: messageId, at: now });
      while (this.#sentAcks.length > 0 && now - this.#sentAcks[0]!.at > ACK_RESEND_WINDOW_MS) {
        this.#sentAcks.shift();
      }
    } else {
      this.#pendingAcks.add(messageId);
    }
  }

  #onOnline = (): void => {
    if (this.#stopped || this.#ws) return;
    this.#clearTimer();
    this.#backoff.reset();
    void this.#open();
  };

  #onOffline = (): void => {
    if (this.#stopped) return;
    this.#clearTimer();
    if (this.#ws) this.#drop("offline", false);
    this.#setState("offline");
  };

  async #open(): Promise<void> {
    if (this.#stopped || this.#ws) return;
    if (this.#network && !this.#network.online()) {
      this.#setState("offline");
      return;
    }
    this.#setState("connecting");
    const generation = ++this.#generation;
    // Frames of the last socket still being processed move `since`.
    await this.#queue;
    if (this.#stopped || generation !== this.#generation) return;
    const token = this.transport.token();
    const since = this.#since;
    const url = new URL(this.transport.url);
    if (since !== undefined && token === undefined) url.searchParams.set("since", since);
    let ws: WebSocketLike;
    try {
      ws = new this.transport.WebSocket(url.toString());
    } catch (e) {
      this.#report(e);
      this.#closed(generation, CLIENT_DROP, `cannot open a socket: ${String(e)}`);
      return;
    }
    this.#ws = ws;
    this.#lastHeard = Date.now();
    ws.addEventListener("open", () => {
      if (generation !== this.#generation) return;
      this.#lastHeard = Date.now();
      if (token !== undefined) {
        this.#send(ws, since === undefined ? { type: "auth", token } : { type: "auth", token, since });
      }
    });
    ws.addEventListener("message", (event: { data: unknown }) => {
      if (generation !== this.#generation) return;
      this.#lastHeard = Date.now();
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(event.data)) as ServerFrame;
      } catch (e) {
        this.#report(e);
        return;
      }
      this.#queue = this.#queue.then(() => this.#process(frame, generation));
    });
    ws.addEventListener("close", (event: { code?: number; reason?: unknown }) => {
      this.#closed(generation, event.code ?? 1006, String(event.reason ?? ""));
    });
    ws.addEventListener("error", () => {
      // A `close` event follows and decides what happens.
    });
    this.#startHeartbeat(generation);
  }

  async #process(frame: ServerFrame, generation: number): Promise<void> {
    if (this.#failed === generation) return;
    try {
      if (frame.type === "ready") {
        this.#userId = frame.user_id;
        if (generation === this.#generation) this.#setState("syncing");
      }
      await this.emitAsync("frame", frame);
      switch (frame.type) {
        case "ready":
          await this.emitAsync("ready", frame);
          break;
        case "message":
          await this.emitAsync("message", frame);
          break;
        case "delivered":
          await this.emitAsync("delivered", frame);
          break;
        case "read":
          await this.emitAsync("read", frame);
          break;
        case "synced":
          await this.emitAsync("synced", frame);
          break;
        case "error":
          this.#report(new ParleySocketError(frame.detail));
          break;
        case "pong":
          break;
      }
    } catch (e) {
      this.#report(e);
      this.#failed = generation;
      if (generation === this.#generation && this.#ws) this.#drop("a listener failed", true);
      return;
    }
    if ("seq" in frame) this.#since = frame.seq;
    if (frame.type === "message" && this.#opts.autoAck && frame.message.to === this.#userId) {
      this.ack(frame.message.id);
    }
    if (generation !== this.#generation) return;
    if (frame.type === "ready") {
      this.#readyOn = generation;
      for (const id of [...this.#pendingAcks]) {
        this.#pendingAcks.delete(id);
        this.ack(id);
      }
      if (this.#resyncPending) {
        this.#resyncPending = false;
        await this.emitAsync("resync", frame).catch((e: unknown) => this.#report(e));
      }
    }
    if (frame.type === "synced") {
      this.#backoff.reset();
      this.#setState("live");
    }
  }

  /** A socket ended: decide, from its close code, what comes next. */
  #closed(generation: number, code: number, reason: string): void {
    if (generation !== this.#generation) return;
    this.#generation++;
    this.#ws = undefined;
    this.#stopHeartbeat();
    this.#keepRecentAcks();
    if (this.#stopped) return;
    let delay: number | null;
    switch (code) {
      case 4401:
        delay = null;
        break;
      case 4409:
        // The token cannot be served: start over without it.
        this.#since = undefined;
        this.#resyncPending = true;
        delay = this.#backoff.next();
        break;
      case 4429:
        delay = Math.max(TOO_MANY_DELAY_MS, this.#backoff.next());
        break;
      default:
        // 4008 lagging, 1013 not ready, 1001 going away, 1009 a frame too
        // large, 1006 a lost connection: resume from `since`.
        delay = this.#backoff.next();
    }
    const info: Disconnect = { code, reason, retryInMs: delay };
    this.emitNow("disconnect", info, (e) => this.#report(e));
    if (delay === null) {
      this.close();
      this.emitNow("unauthorized", info, (e) => this.#report(e));
      return;
    }
    this.#schedule(delay);
  }

  /**
   * Gives up on the current socket as if it had closed with 4000: then
   * reconnects after a delay, or (`retry` false: offline) waits for the
   * browser to be online again.
   */
  #drop(reason: string, retry: boolean): void {
    const ws = this.#ws;
    const generation = this.#generation;
    if (!ws) return;
    try {
      ws.close(CLIENT_DROP, reason);
    } catch {
      // closing already
    }
    if (retry) {
      this.#closed(generation, CLIENT_DROP, reason);
      return;
    }
    this.#generation++;
    this.#ws = undefined;
    this.#stopHeartbeat();
    this.#keepRecentAcks();
    this.emitNow("disconnect", { code: CLIENT_DROP, reason, retryInMs: null }, (e) => this.#report(e));
  }

  #schedule(delay: number): void {
    this.#clearTimer();
    this.#setState("waiting");
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#open();
    }, delay);
  }

  /** Acks sent just before a drop may have been lost with it. */
  #keepRecentAcks(): void {
    const now = Date.now();
    for (const a of this.#sentAcks) {
      if (now - a.at <= ACK_RESEND_WINDOW_MS) this.#pendingAcks.add(a.id);
    }
    this.#sentAcks = [];
  }

  #startHeartbeat(generation: number): void {
    this.#stopHeartbeat();
    const { heartbeatMs, heartbeatTimeoutMs } = this.#opts;
    let lastPing = 0;
    this.#heartbeat = setInterval(
      () => {
        const ws = this.#ws;
        if (!ws || generation !== this.#generation) return;
        const now = Date.now();
        const quiet = now - this.#lastHeard;
        if (quiet >= heartbeatMs + heartbeatTimeoutMs) {
          this.#drop("no answer to a ping", true);
        } else if (quiet >= heartbeatMs && now - lastPing >= heartbeatMs && ws.readyState === OPEN) {
          lastPing = now;
          this.#send(ws, { type: "ping" });
        }
      },
      Math.max(10, Math.min(heartbeatMs, heartbeatTimeoutMs) / 2),
    );
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #send(ws: WebSocketLike, frame: ClientFrame): void {
    try {
      ws.send(JSON.stringify(frame));
    } catch (e) {
      this.#report(e);
    }
  }

  #setState(state: SocketState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emitNow("state", state, (e) => this.#report(e));
  }

  #report(e: unknown): void {
    if (this.listenerCount("error") === 0) return;
    this.emitNow("error", e, () => {});
  }
}
