import { Http, sleep, type AuthMode, type RetryOptions } from "./http.js";
import { newClientId } from "./ids.js";
import { ParleySocket, type SocketOptions, type WebSocketConstructor } from "./socket.js";
import type { Conversation, HistoryPage, Message, Session, User } from "./types.js";

export interface ParleyClientOptions {
  /** Where Parley is, e.g. `http://127.0.0.1:8080`. Default: the page's origin. */
  baseUrl?: string;
  /**
   * `cookie` (default in browsers): the server's `HttpOnly` session cookie
   * authenticates every request and the socket; the token never needs to
   * be kept. `token` (default elsewhere): the token from `login` or
   * `register` goes as `Authorization: Bearer`, and in the socket's first
   * frame.
   */
  auth?: AuthMode;
  /** A session token from an earlier `login` (token mode). */
  token?: string;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Default: the global `WebSocket`; on Node 20 pass the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  retry?: RetryOptions;
}

export interface RegisterInput {
  username: string;
  password: string;
  displayName?: string;
}

export interface SendOptions {
  /**
   * The retry key (default: a new random one). Repeating a send with the
   * same `clientId`, `to` and `body` returns the first message and stores
   * nothing new, so a send whose answer was lost can be repeated safely.
   */
  clientId?: string;
  signal?: AbortSignal;
}

export interface HistoryOptions {
  /** The `next_cursor` of the previous page. */
  before?: string | undefined;
  /** 1 to 200 (default 50). */
  limit?: number;
  signal?: AbortSignal;
}

function defaultBaseUrl(): string {
  const loc = (globalThis as { location?: { origin?: string } }).location;
  if (loc?.origin && loc.origin !== "null") return loc.origin;
  throw new TypeError("ParleyClient: baseUrl is required outside a browser page");
}

/**
 * Parley's HTTP API and socket. Calls that are safe to repeat (reads,
 * sends, read markers, login) are retried on 429, 503 and network
 * failures, after the server's `Retry-After` when it gives one; other
 * errors are thrown as `ParleyError`.
 */
export class ParleyClient {
  readonly baseUrl: string;
  readonly auth: AuthMode;
  #token: string | undefined;
  #user: User | undefined;
  #http: Http;
  #WebSocket: WebSocketConstructor | undefined;
  #sockets = new Set<ParleySocket>();

  constructor(options: ParleyClientOptions = {}) {
    this.baseUrl = options.baseUrl ?? defaultBaseUrl();
    const inBrowser = typeof (globalThis as { document?: unknown }).document !== "undefined";
    this.auth = options.auth ?? (inBrowser ? "cookie" : "token");
    this.#token = options.token;
    this.#WebSocket =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const f = options.fetch ?? globalThis.fetch;
    this.#http = new Http({
      baseUrl: this.baseUrl,
      auth: this.auth,
      token: () => this.#token,
      fetch: (input, init) => f(input, init),
      retry: {
        maxAttempts: options.retry?.maxAttempts ?? 5,
        maxDelayMs: options.retry?.maxDelayMs ?? 30_000,
        initialDelayMs: options.retry?.initialDelayMs ?? 250,
      },
      random: Math.random,
      sleep,
    });
  }

  /** The session token (token mode), from `login`, `register` or the options. */
  get token(): string | undefined {
    return this.#token;
  }

  /** The signed-in user, once `login`, `register` or `me` said who it is. */
  get user(): User | undefined {
    return this.#user;
  }

  /** Creates an account and signs in (201). A taken username is a 409. */
  async register(input: RegisterInput): Promise<Session> {
    const body: Record<string, string> = { username: input.username, password: input.password };
    if (input.displayName !== undefined) body.display_name = input.displayName;
    // Not retried: a lost answer may have created the account.
    return this.#session(await this.#http.request<Session>("POST", "/v1/auth/register", { body }));
  }

  /** Signs in. A wrong username or password is a 401. */
  async login(username: string, password: string): Promise<Session> {
    const s = await this.#http.request<Session>("POST", "/v1/auth/login", {
      body: { username, password },
      retry: true,
    });
    return this.#session(s);
  }

  /** Ends the session everywhere: its token stops working and its sockets close. */
  async logout(): Promise<void> {
    for (const s of this.#sockets) s.close();
    this.#sockets.clear();
    try {
      await this.#http.request<void>("POST", "/v1/auth/logout", { retry: true });
    } finally {
      this.#token = undefined;
      this.#user = undefined;
    }
  }

  /** Who the session belongs to (401 without a valid session). */
  async me(): Promise<User> {
    const r = await this.#http.request<{ user: User }>("GET", "/v1/me", { retry: true });
    this.#user = r.user;
    return r.user;
  }

  /** Users whose username starts with `prefix` (at most 20, alphabetical). */
  async searchUsers(prefix: string, options: { signal?: AbortSignal } = {}): Promise<User[]> {
    const r = await this.#http.request<{ users: User[] }>("GET", "/v1/users", {
      query: { query: prefix },
      retry: true,
      signal: options.signal,
    });
    return r.users;
  }

  /** The user's conversations, newest activity first, with unread counts. */
  async inbox(): Promise<Conversation[]> {
    const r = await this.#http.request<{ conversations: Conversation[] }>("GET", "/v1/conversations", {
      retry: true,
    });
    return r.conversations;
  }

  /** One page of the conversation with `peerId`, newest first. */
  history(peerId: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    return this.#http.request<HistoryPage>("GET", `/v1/conversations/${encodeURIComponent(peerId)}/messages`, {
      query: { before: options.before, limit: options.limit },
      retry: true,
      signal: options.signal,
    });
  }

  /** Every page of a conversation, newest first, following the cursors. */
  async *pages(peerId: string, options: Omit<HistoryOptions, "before"> = {}): AsyncGenerator<Message[]> {
    let before: string | undefined;
    for (;;) {
      const page = await this.history(peerId, { ...options, before });
      yield page.messages;
      if (page.next_cursor === null) return;
      before = page.next_cursor;
    }
  }

  /**
   * Sends `body` to the user `to`; resolves once the message is durable
   * (202). Retried with the same `client_id`, so a retry never sends twice.
   */
  async send(to: string, body: string, options: SendOptions = {}): Promise<Message> {
    const clientId = options.clientId ?? newClientId();
    const r = await this.#http.request<{ message: Message }>("POST", "/v1/messages", {
      body: { to, body, client_id: clientId },
      retry: true,
      signal: options.signal,
    });
    return r.message;
  }

  /** Marks the conversation with `peerId` read up to the message `upTo`. */
  async markRead(peerId: string, upTo: string): Promise<void> {
    await this.#http.request<void>("POST", `/v1/conversations/${encodeURIComponent(peerId)}/read`, {
      body: { up_to: upTo },
      retry: true,
    });
  }

  /**
   * A socket that connects now and stays connected (see `ParleySocket`).
   * In token mode it needs a session: `login`, `register` or `token` first.
   */
  connect(options: SocketOptions = {}): ParleySocket {
    const WS = this.#WebSocket;
    if (!WS) {
      throw new TypeError(
        "ParleyClient: no WebSocket here; pass one (on Node 20: `import WebSocket from \"ws\"`)",
      );
    }
    if (this.auth === "token" && !this.#token) {
      throw new TypeError("ParleyClient: token mode needs a session before connecting");
    }
    const url = new URL("/v1/ws", this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new ParleySocket(
      {
        url: url.toString(),
        token: () => (this.auth === "token" ? this.#token : undefined),
        WebSocket: WS,
      },
      options,
    );
    this.#sockets.add(socket);
    socket.on("state", (s) => {
      if (s === "closed") this.#sockets.delete(socket);
    });
    return socket.connect();
  }

  #session(s: Session): Session {
    this.#token = this.auth === "token" ? s.token : undefined;
    this.#user = s.user;
    return s;
  }
}
