// ts/src/backoff.ts
var Backoff = class {
  constructor(initialMs, maxMs, random = Math.random) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
  }
  initialMs;
  maxMs;
  random;
  #attempt = 0;
  /** Delays handed out since the last `reset`. */
  get attempt() {
    return this.#attempt;
  }
  next() {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt += 1;
    return Math.round(cap / 2 + this.random() * cap / 2);
  }
  reset() {
    this.#attempt = 0;
  }
};

// ts/src/errors.ts
var ParleyError = class extends Error {
  /** The HTTP status; 0 when no answer came. */
  status;
  /** The problem+json body, when the server sent one. */
  problem;
  /** From `Retry-After` (429 and 503): how long to wait before trying again. */
  retryAfterMs;
  constructor(status, message, options = {}) {
    super(message, options.cause === void 0 ? void 0 : { cause: options.cause });
    this.name = "ParleyError";
    this.status = status;
    this.problem = options.problem;
    this.retryAfterMs = options.retryAfterMs;
  }
  /** The problem's `type`, e.g. `urn:parley:problem:conflict`. */
  get type() {
    return this.problem?.type;
  }
  /** Validation failures (422): which field, and what is wrong with it. */
  get fieldErrors() {
    return this.problem?.errors ?? [];
  }
  /** True for answers worth repeating later: 429, 503, or no answer. */
  get retryable() {
    return this.status === 0 || this.status === 429 || this.status === 503;
  }
};
var ParleySocketError = class extends Error {
  constructor(detail) {
    super(detail);
    this.name = "ParleySocketError";
  }
};
function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return void 0;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1e3;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return void 0;
  return Math.max(0, at - now);
}

// ts/src/http.ts
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
var Http = class {
  constructor(settings) {
    this.settings = settings;
  }
  settings;
  url(path, query) {
    const u = new URL(path, this.settings.baseUrl);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== void 0) u.searchParams.set(k, String(v));
    }
    return u.toString();
  }
  async request(method, path, opts = {}) {
    const { retry } = this.settings;
    const attempts = opts.retry ? Math.max(1, retry.maxAttempts) : 1;
    const backoff = new Backoff(retry.initialDelayMs, retry.maxDelayMs, this.settings.random);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(method, path, opts);
      } catch (e) {
        if (!(e instanceof ParleyError) || !e.retryable || attempt >= attempts) throw e;
        const wait = e.retryAfterMs ?? backoff.next();
        if (wait > retry.maxDelayMs) throw e;
        await this.settings.sleep(wait, opts.signal);
      }
    }
  }
  async once(method, path, opts) {
    const headers = { accept: "application/json" };
    const token = this.settings.token();
    if (this.settings.auth === "token" && token) headers.authorization = `Bearer ${token}`;
    let body = null;
    if (opts.body !== void 0) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await this.settings.fetch(this.url(path, opts.query), {
        method,
        headers,
        body,
        credentials: this.settings.auth === "cookie" ? "include" : "omit",
        signal: opts.signal ?? null
      });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw new ParleyError(0, `cannot reach Parley: ${String(e)}`, { cause: e });
    }
    const text = await res.text().catch(() => "");
    if (res.ok) return text ? JSON.parse(text) : void 0;
    const problem = parseProblem(text);
    const message = problem ? [problem.title, problem.detail].filter(Boolean).join(": ") : `HTTP ${res.status}`;
    const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
    throw new ParleyError(res.status, message, {
      ...problem ? { problem } : {},
      ...retryAfterMs !== void 0 ? { retryAfterMs } : {}
    });
  }
};
function parseProblem(text) {
  try {
    const v = JSON.parse(text);
    if (v && typeof v === "object" && typeof v.status === "number" && typeof v.title === "string") {
      return v;
    }
  } catch {
  }
  return void 0;
}

// ts/src/ids.ts
function newClientId() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = b[6] & 15 | 64;
  b[8] = b[8] & 63 | 128;
  const h2 = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h2.slice(0, 8)}-${h2.slice(8, 12)}-${h2.slice(12, 16)}-${h2.slice(16, 20)}-${h2.slice(20)}`;
}

// ts/src/emitter.ts
var Emitter = class {
  #listeners = /* @__PURE__ */ new Map();
  /** Adds a listener; the returned function removes it. */
  on(event, listener) {
    let set = this.#listeners.get(event);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }
  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }
  listenerCount(event) {
    return this.#listeners.get(event)?.size ?? 0;
  }
  /** Calls every listener; resolves once each (and its promise) is done. */
  async emitAsync(event, value) {
    for (const l of [...this.#listeners.get(event) ?? []]) {
      await l(value);
    }
  }
  /** Calls every listener now; a listener that throws is reported to `onError`. */
  emitNow(event, value, onError) {
    for (const l of [...this.#listeners.get(event) ?? []]) {
      try {
        const r = l(value);
        if (r instanceof Promise) r.catch(onError);
      } catch (e) {
        onError(e);
      }
    }
  }
};

// ts/src/socket.ts
var OPEN = 1;
var ACK_RESEND_WINDOW_MS = 1e4;
var TOO_MANY_DELAY_MS = 1e4;
var CLIENT_DROP = 4e3;
function browserNetwork() {
  const g = globalThis;
  if (!g.window || typeof g.window.addEventListener !== "function" || !g.navigator) return void 0;
  return { target: g.window, online: () => g.navigator?.onLine !== false };
}
var ParleySocket = class extends Emitter {
  constructor(transport, options = {}) {
    super();
    this.transport = transport;
    this.#since = options.since;
    this.#opts = {
      autoAck: options.autoAck ?? true,
      initialDelayMs: options.initialDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 3e4,
      heartbeatMs: options.heartbeatMs ?? 25e3,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 1e4,
      watchNetwork: options.watchNetwork ?? browserNetwork() !== void 0
    };
    this.#backoff = new Backoff(this.#opts.initialDelayMs, this.#opts.maxDelayMs, options.random);
    this.#network = this.#opts.watchNetwork ? browserNetwork() : void 0;
  }
  transport;
  #since;
  #state = "closed";
  #userId;
  #ws;
  /** Each socket opened gets a number; events of older ones are ignored. */
  #generation = 0;
  /** A socket whose frames are no longer processed (a listener failed). */
  #failed = -1;
  /** Whether `ready` came on the current socket (acks may go). */
  #readyOn = -1;
  #queue = Promise.resolve();
  #backoff;
  #timer;
  #heartbeat;
  #lastHeard = 0;
  #stopped = true;
  #resyncPending = false;
  #pendingAcks = /* @__PURE__ */ new Set();
  #sentAcks = [];
  #network;
  #opts;
  /** The sync token to resume from: the `seq` of the last frame processed. */
  get since() {
    return this.#since;
  }
  get state() {
    return this.#state;
  }
  /** The user this socket is for, once `ready` came. */
  get userId() {
    return this.#userId;
  }
  /** Starts connecting (and keeps reconnecting until `close`). */
  connect() {
    if (!this.#stopped) return this;
    this.#stopped = false;
    this.#network?.target.addEventListener("online", this.#onOnline);
    this.#network?.target.addEventListener("offline", this.#onOffline);
    void this.#open();
    return this;
  }
  /** Stops for good: closes the socket and cancels any reconnect. */
  close() {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#network?.target.removeEventListener("online", this.#onOnline);
    this.#network?.target.removeEventListener("offline", this.#onOffline);
    this.#clearTimer();
    this.#stopHeartbeat();
    const ws = this.#ws;
    this.#ws = void 0;
    this.#generation++;
    try {
      ws?.close(1e3, "closed by the client");
    } catch {
    }
    this.#setState("closed");
  }
  /**
   * Acknowledges a message addressed to the user (done by itself unless
   * `autoAck` is false). Acks that cannot go now go on the next socket;
   * the server records each message's delivery once however often it is
   * acknowledged.
   */
  ack(messageId) {
    const ws = this.#ws;
    if (ws && ws.readyState === OPEN && this.#readyOn === this.#generation) {
      this.#send(ws, { type: "ack", message_id: messageId });
      const now = Date.now();
      this.#sentAcks.push({ id: messageId, at: now });
      while (this.#sentAcks.length > 0 && now - this.#sentAcks[0].at > ACK_RESEND_WINDOW_MS) {
        this.#sentAcks.shift();
      }
    } else {
      this.#pendingAcks.add(messageId);
    }
  }
  #onOnline = () => {
    if (this.#stopped || this.#ws) return;
    this.#clearTimer();
    this.#backoff.reset();
    void this.#open();
  };
  #onOffline = () => {
    if (this.#stopped) return;
    this.#clearTimer();
    if (this.#ws) this.#drop("offline", false);
    this.#setState("offline");
  };
  async #open() {
    if (this.#stopped || this.#ws) return;
    if (this.#network && !this.#network.online()) {
      this.#setState("offline");
      return;
    }
    this.#setState("connecting");
    const generation = ++this.#generation;
    await this.#queue;
    if (this.#stopped || generation !== this.#generation) return;
    const token = this.transport.token();
    const since = this.#since;
    const url = new URL(this.transport.url);
    if (since !== void 0 && token === void 0) url.searchParams.set("since", since);
    let ws;
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
      if (token !== void 0) {
        this.#send(ws, since === void 0 ? { type: "auth", token } : { type: "auth", token, since });
      }
    });
    ws.addEventListener("message", (event) => {
      if (generation !== this.#generation) return;
      this.#lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(String(event.data));
      } catch (e) {
        this.#report(e);
        return;
      }
      this.#queue = this.#queue.then(() => this.#process(frame, generation));
    });
    ws.addEventListener("close", (event) => {
      this.#closed(generation, event.code ?? 1006, String(event.reason ?? ""));
    });
    ws.addEventListener("error", () => {
    });
    this.#startHeartbeat(generation);
  }
  async #process(frame, generation) {
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
        await this.emitAsync("resync", frame).catch((e) => this.#report(e));
      }
    }
    if (frame.type === "synced") {
      this.#backoff.reset();
      this.#setState("live");
    }
  }
  /** A socket ended: decide, from its close code, what comes next. */
  #closed(generation, code, reason) {
    if (generation !== this.#generation) return;
    this.#generation++;
    this.#ws = void 0;
    this.#stopHeartbeat();
    this.#keepRecentAcks();
    if (this.#stopped) return;
    let delay;
    switch (code) {
      case 4401:
        delay = null;
        break;
      case 4409:
        this.#since = void 0;
        this.#resyncPending = true;
        delay = this.#backoff.next();
        break;
      case 4429:
        delay = Math.max(TOO_MANY_DELAY_MS, this.#backoff.next());
        break;
      default:
        delay = this.#backoff.next();
    }
    const info = { code, reason, retryInMs: delay };
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
  #drop(reason, retry) {
    const ws = this.#ws;
    const generation = this.#generation;
    if (!ws) return;
    try {
      ws.close(CLIENT_DROP, reason);
    } catch {
    }
    if (retry) {
      this.#closed(generation, CLIENT_DROP, reason);
      return;
    }
    this.#generation++;
    this.#ws = void 0;
    this.#stopHeartbeat();
    this.#keepRecentAcks();
    this.emitNow("disconnect", { code: CLIENT_DROP, reason, retryInMs: null }, (e) => this.#report(e));
  }
  #schedule(delay) {
    this.#clearTimer();
    this.#setState("waiting");
    this.#timer = setTimeout(() => {
      this.#timer = void 0;
      void this.#open();
    }, delay);
  }
  /** Acks sent just before a drop may have been lost with it. */
  #keepRecentAcks() {
    const now = Date.now();
    for (const a of this.#sentAcks) {
      if (now - a.at <= ACK_RESEND_WINDOW_MS) this.#pendingAcks.add(a.id);
    }
    this.#sentAcks = [];
  }
  #startHeartbeat(generation) {
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
      Math.max(10, Math.min(heartbeatMs, heartbeatTimeoutMs) / 2)
    );
  }
  #stopHeartbeat() {
    if (this.#heartbeat !== void 0) clearInterval(this.#heartbeat);
    this.#heartbeat = void 0;
  }
  #clearTimer() {
    if (this.#timer !== void 0) clearTimeout(this.#timer);
    this.#timer = void 0;
  }
  #send(ws, frame) {
    try {
      ws.send(JSON.stringify(frame));
    } catch (e) {
      this.#report(e);
    }
  }
  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.emitNow("state", state, (e) => this.#report(e));
  }
  #report(e) {
    if (this.listenerCount("error") === 0) return;
    this.emitNow("error", e, () => {
    });
  }
};

// ts/src/client.ts
function defaultBaseUrl() {
  const loc = globalThis.location;
  if (loc?.origin && loc.origin !== "null") return loc.origin;
  throw new TypeError("ParleyClient: baseUrl is required outside a browser page");
}
var ParleyClient = class {
  baseUrl;
  auth;
  #token;
  #user;
  #http;
  #WebSocket;
  #sockets = /* @__PURE__ */ new Set();
  constructor(options = {}) {
    this.baseUrl = options.baseUrl ?? defaultBaseUrl();
    const inBrowser = typeof globalThis.document !== "undefined";
    this.auth = options.auth ?? (inBrowser ? "cookie" : "token");
    this.#token = options.token;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    const f = options.fetch ?? globalThis.fetch;
    this.#http = new Http({
      baseUrl: this.baseUrl,
      auth: this.auth,
      token: () => this.#token,
      fetch: (input, init) => f(input, init),
      retry: {
        maxAttempts: options.retry?.maxAttempts ?? 5,
        maxDelayMs: options.retry?.maxDelayMs ?? 3e4,
        initialDelayMs: options.retry?.initialDelayMs ?? 250
      },
      random: Math.random,
      sleep
    });
  }
  /** The session token (token mode), from `login`, `register` or the options. */
  get token() {
    return this.#token;
  }
  /** The signed-in user, once `login`, `register` or `me` said who it is. */
  get user() {
    return this.#user;
  }
  /** Creates an account and signs in (201). A taken username is a 409. */
  async register(input) {
    const body = { username: input.username, password: input.password };
    if (input.displayName !== void 0) body.display_name = input.displayName;
    return this.#session(await this.#http.request("POST", "/v1/auth/register", { body }));
  }
  /** Signs in. A wrong username or password is a 401. */
  async login(username, password) {
    const s = await this.#http.request("POST", "/v1/auth/login", {
      body: { username, password },
      retry: true
    });
    return this.#session(s);
  }
  /** Ends the session everywhere: its token stops working and its sockets close. */
  async logout() {
    for (const s of this.#sockets) s.close();
    this.#sockets.clear();
    try {
      await this.#http.request("POST", "/v1/auth/logout", { retry: true });
    } finally {
      this.#token = void 0;
      this.#user = void 0;
    }
  }
  /** Who the session belongs to (401 without a valid session). */
  async me() {
    const r = await this.#http.request("GET", "/v1/me", { retry: true });
    this.#user = r.user;
    return r.user;
  }
  /** Users whose username starts with `prefix` (at most 20, alphabetical). */
  async searchUsers(prefix, options = {}) {
    const r = await this.#http.request("GET", "/v1/users", {
      query: { query: prefix },
      retry: true,
      signal: options.signal
    });
    return r.users;
  }
  /** The user's conversations, newest activity first, with unread counts. */
  async inbox() {
    const r = await this.#http.request("GET", "/v1/conversations", {
      retry: true
    });
    return r.conversations;
  }
  /** One page of the conversation with `peerId`, newest first. */
  history(peerId, options = {}) {
    return this.#http.request("GET", `/v1/conversations/${encodeURIComponent(peerId)}/messages`, {
      query: { before: options.before, limit: options.limit },
      retry: true,
      signal: options.signal
    });
  }
  /** Every page of a conversation, newest first, following the cursors. */
  async *pages(peerId, options = {}) {
    let before;
    for (; ; ) {
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
  async send(to, body, options = {}) {
    const clientId = options.clientId ?? newClientId();
    const r = await this.#http.request("POST", "/v1/messages", {
      body: { to, body, client_id: clientId },
      retry: true,
      signal: options.signal
    });
    return r.message;
  }
  /** Marks the conversation with `peerId` read up to the message `upTo`. */
  async markRead(peerId, upTo) {
    await this.#http.request("POST", `/v1/conversations/${encodeURIComponent(peerId)}/read`, {
      body: { up_to: upTo },
      retry: true
    });
  }
  /**
   * A socket that connects now and stays connected (see `ParleySocket`).
   * In token mode it needs a session: `login`, `register` or `token` first.
   */
  connect(options = {}) {
    const WS = this.#WebSocket;
    if (!WS) {
      throw new TypeError(
        'ParleyClient: no WebSocket here; pass one (on Node 20: `import WebSocket from "ws"`)'
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
        token: () => this.auth === "token" ? this.#token : void 0,
        WebSocket: WS
      },
      options
    );
    this.#sockets.add(socket);
    socket.on("state", (s) => {
      if (s === "closed") this.#sockets.delete(socket);
    });
    return socket.connect();
  }
  #session(s) {
    this.#token = this.auth === "token" ? s.token : void 0;
    this.#user = s.user;
    return s;
  }
};

// web/src/dom.ts
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el;
}
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === void 0 || v === false) continue;
    el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children);
  return el;
}
function show(el, visible) {
  el.hidden = !visible;
}
function when(iso) {
  const d = new Date(iso);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === (/* @__PURE__ */ new Date()).toDateString()) return time;
  return `${d.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

// web/src/chat.ts
var PAGE = 50;
var STATES = {
  connecting: "Connecting…",
  syncing: "Catching up…",
  live: "Connected",
  waiting: "Reconnecting…",
  offline: "Offline: reconnecting when the network is back",
  closed: ""
};
var Chat = class {
  constructor(client2, me, onSessionEnded) {
    this.client = client2;
    this.me = me;
    this.onSessionEnded = onSessionEnded;
  }
  client;
  me;
  onSessionEnded;
  #socket;
  #inbox = /* @__PURE__ */ new Map();
  #threads = /* @__PURE__ */ new Map();
  #outgoing = /* @__PURE__ */ new Map();
  /** The sends in flight, one after another. */
  #sending = Promise.resolve();
  /** Message ids that came in frames: a second frame for one is a protocol bug. */
  #framed = /* @__PURE__ */ new Set();
  #active;
  #inboxLoaded = false;
  #refreshTimer;
  #refreshTries = 0;
  #searchTimer;
  #stopped = false;
  #cleanup = [];
  start() {
    const s = this.client.connect();
    this.#socket = s;
    s.on("state", (state) => this.#showState(state));
    s.on("ready", () => {
      if (!this.#inboxLoaded) void this.#loadInbox();
    });
    s.on("resync", () => this.#resync());
    s.on("message", ({ message }) => this.#onMessage(message));
    s.on("delivered", (f) => this.#onDelivered(f));
    s.on("read", (f) => this.#onRead(f));
    s.on("synced", () => this.#markRead());
    s.on("unauthorized", () => this.onSessionEnded());
    s.on("error", (e) => console.warn("parley:", e));
    this.#showState(s.state);
    this.#listen(byId("search"), "input", () => this.#searchSoon());
    this.#listen(byId("search-form"), "submit", (e) => {
      e.preventDefault();
      this.#searchSoon(0);
    });
    this.#listen(byId("back"), "click", () => this.#close());
    this.#listen(byId("older"), "click", () => void this.#loadOlder());
    this.#listen(byId("scroller"), "scroll", () => {
      if (byId("scroller").scrollTop < 40) void this.#loadOlder();
    });
    this.#listen(byId("composer"), "submit", (e) => {
      e.preventDefault();
      this.#sendFromComposer();
    });
    this.#listen(byId("body"), "keydown", (e) => {
      const k = e;
      if (k.key === "Enter" && !k.shiftKey) {
        k.preventDefault();
        this.#sendFromComposer();
      }
    });
    this.#listen(document, "visibilitychange", () => this.#markRead());
    this.#renderInbox();
  }
  stop() {
    this.#stopped = true;
    this.#socket?.close();
    for (const off of this.#cleanup) off();
    this.#cleanup = [];
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#searchTimer);
    this.#showState("closed");
    byId("inbox").replaceChildren();
    byId("search-results").replaceChildren();
    byId("search").value = "";
    this.#close();
  }
  #listen(target, type, handler) {
    target.addEventListener(type, handler);
    this.#cleanup.push(() => target.removeEventListener(type, handler));
  }
  #showState(state) {
    const el = byId("connection");
    el.dataset.state = state;
    el.textContent = STATES[state];
  }
  #announce(text) {
    const a = byId("announcer");
    a.textContent = "";
    setTimeout(() => a.textContent = text, 50);
  }
  #failure(e) {
    if (e instanceof ParleyError && e.status === 401) {
      this.onSessionEnded();
      return;
    }
    console.warn("parley:", e);
  }
  // --- The inbox -------------------------------------------------------
  async #loadInbox() {
    try {
      const conversations = await this.client.inbox();
      if (this.#stopped) return;
      this.#inboxLoaded = true;
      const fresh = /* @__PURE__ */ new Map();
      for (const c of conversations) {
        const local = this.#inbox.get(c.peer.id);
        fresh.set(c.peer.id, local && local.last_message.id > c.last_message.id ? { ...c, ...local, peer: c.peer } : c);
      }
      for (const [peer, local] of this.#inbox) {
        if (!fresh.has(peer)) fresh.set(peer, local);
      }
      this.#inbox = fresh;
      this.#renderInbox();
      if ([...this.#inbox.values()].some((c) => c.peer.username === "")) this.#refreshInboxSoon();
    } catch (e) {
      this.#failure(e);
    }
  }
  /** The store projects events a moment after the socket has them. */
  #refreshInboxSoon() {
    if (this.#refreshTimer !== void 0 || this.#refreshTries >= 10) return;
    this.#refreshTries++;
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = void 0;
      void this.#loadInbox();
    }, 300 * this.#refreshTries);
  }
  #renderInbox() {
    const list = byId("inbox");
    const items = [...this.#inbox.values()].sort((a, b) => a.last_message.id < b.last_message.id ? 1 : -1);
    list.replaceChildren(
      ...items.map((c) => {
        const unread = c.unread_count > 0 ? h("span", { class: "unread" }, String(c.unread_count)) : "";
        const label = c.unread_count > 0 ? `, ${c.unread_count} unread` : "";
        const from = c.last_message.from === this.me.id ? "You: " : "";
        const button = h(
          "button",
          {
            type: "button",
            class: "conversation",
            "data-peer": c.peer.id,
            "data-unread": String(c.unread_count),
            "aria-current": c.peer.id === this.#active ? "true" : void 0
          },
          h("span", { class: "name" }, c.peer.display_name || "New conversation", h("span", { class: "visually-hidden" }, label)),
          unread,
          h("span", { class: "preview" }, from + c.last_message.body)
        );
        button.addEventListener("click", () => void this.#open(c.peer));
        return h("li", {}, button);
      })
    );
    show(byId("inbox-empty"), items.length === 0);
  }
  /** The inbox entry for `m`'s conversation moves on to `m`. */
  #touchInbox(m, countUnread) {
    const peerId = m.from === this.me.id ? m.to : m.from;
    const known = this.#inbox.get(peerId);
    const peer = known?.peer ?? this.#threads.get(peerId)?.peer;
    const entry = known ?? {
      conversation_id: m.conversation_id,
      peer: peer ?? { id: peerId, username: "", display_name: "", created_at: m.sent_at },
      last_message: m,
      unread_count: 0
    };
    if (m.id >= entry.last_message.id) entry.last_message = m;
    if (countUnread) entry.unread_count += 1;
    this.#inbox.set(peerId, entry);
    if (entry.peer.username === "") this.#refreshInboxSoon();
    this.#renderInbox();
  }
  // --- People search ---------------------------------------------------
  #searchSoon(delay = 200) {
    clearTimeout(this.#searchTimer);
    this.#searchTimer = setTimeout(() => void this.#search(), delay);
  }
  async #search() {
    const q = byId("search").value.trim();
    const list = byId("search-results");
    if (!/^[A-Za-z0-9_.]{1,32}$/.test(q)) {
      list.replaceChildren();
      return;
    }
    try {
      const users = (await this.client.searchUsers(q)).filter((u) => u.id !== this.me.id);
      if (byId("search").value.trim() !== q) return;
      list.replaceChildren(
        ...users.length === 0 ? [h("li", { class: "hint" }, "Nobody by that name.")] : users.map((u) => {
          const b = h(
            "button",
            { type: "button", "data-user": u.username },
            h("span", { class: "name" }, u.display_name),
            h("span", { class: "preview" }, `@${u.username}`)
          );
          b.addEventListener("click", () => {
            list.replaceChildren();
            byId("search").value = "";
            void this.#open(u);
          });
          return h("li", {}, b);
        })
      );
    } catch (e) {
      this.#failure(e);
    }
  }
  // --- One conversation --------------------------------------------------
  #thread(peer) {
    let t = this.#threads.get(peer.id);
    if (!t) {
      t = { peer, messages: /* @__PURE__ */ new Map(), cursor: void 0, loading: false, markedUpTo: void 0 };
      this.#threads.set(peer.id, t);
    } else if (peer.username) {
      t.peer = peer;
    }
    return t;
  }
  async #open(peer) {
    this.#active = peer.id;
    const t = this.#thread(peer);
    byId("peer-name").textContent = peer.display_name || "New conversation";
    byId("messages").replaceChildren();
    byId("send-error").textContent = "";
    show(byId("placeholder"), false);
    show(byId("conversation"), true);
    this.#renderInbox();
    this.#renderThread(true);
    byId("body").focus();
    if (t.cursor === void 0) await this.#loadOlder();
    this.#markRead();
  }
  #close() {
    this.#active = void 0;
    show(byId("conversation"), false);
    show(byId("placeholder"), true);
    this.#renderInbox();
  }
  async #loadOlder() {
    const peerId = this.#active;
    const t = peerId ? this.#threads.get(peerId) : void 0;
    if (!t || t.loading || t.cursor === null) return;
    t.loading = true;
    const first = t.cursor === void 0;
    try {
      const page = await this.client.history(t.peer.id, {
        limit: PAGE,
        ...t.cursor ? { before: t.cursor } : {}
      });
      for (const m of page.messages) this.#merge(t, m);
      t.cursor = page.next_cursor;
    } catch (e) {
      this.#failure(e);
    } finally {
      t.loading = false;
    }
    if (this.#active !== t.peer.id) return;
    const scroller = byId("scroller");
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    this.#renderThread(first);
    if (!first) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    this.#markRead();
  }
  #merge(t, m) {
    const known = t.messages.get(m.id);
    t.messages.set(m.id, {
      ...m,
      delivered_at: m.delivered_at ?? known?.delivered_at ?? null,
      read_at: m.read_at ?? known?.read_at ?? null
    });
  }
  #renderThread(toBottom = false) {
    const t = this.#active ? this.#threads.get(this.#active) : void 0;
    if (!t) return;
    const scroller = byId("scroller");
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
    const sorted = [...t.messages.values()].sort((a, b) => a.id < b.id ? -1 : 1);
    const items = sorted.map((m) => this.#messageItem(m));
    for (const o of this.#outgoing.values()) {
      if (o.to === t.peer.id) items.push(this.#outgoingItem(o));
    }
    byId("messages").replaceChildren(...items);
    show(byId("older"), t.cursor !== null);
    show(byId("history-start"), t.cursor === null);
    if (toBottom || atBottom) scroller.scrollTop = scroller.scrollHeight;
  }
  #messageItem(m) {
    const mine = m.from === this.me.id;
    const status = m.read_at ? "read" : m.delivered_at ? "delivered" : "sent";
    const mark = mine ? h(
      "span",
      { class: "mark", title: status === "read" ? "Read" : status === "delivered" ? "Delivered" : "Sent" },
      status === "read" ? "✓✓" : status === "delivered" ? "✓" : "",
      h("span", { class: "visually-hidden" }, status === "sent" ? "Sent" : status === "read" ? "Read" : "Delivered")
    ) : "";
    return h(
      "li",
      { class: mine ? "msg mine" : "msg", "data-id": m.id, "data-status": mine ? status : void 0 },
      h("p", { class: "text" }, m.body),
      h("p", { class: "meta" }, h("time", { datetime: m.sent_at }, when(m.sent_at)), mark)
    );
  }
  #outgoingItem(o) {
    const meta = h("p", { class: "meta" }, o.failed ? "Not sent" : "Sending…");
    if (o.failed) {
      const retry = h("button", { type: "button", class: "retry" }, "Retry");
      retry.addEventListener("click", () => this.#send(o));
      meta.append(retry);
    }
    return h(
      "li",
      { class: "msg mine", "data-status": o.failed ? "failed" : "sending" },
      h("p", { class: "text" }, o.body),
      meta
    );
  }
  /** Marks the open conversation read up to the peer's newest message, if the page is seen. */
  #markRead() {
    const t = this.#active ? this.#threads.get(this.#active) : void 0;
    if (!t || document.visibilityState !== "visible") return;
    let newest;
    for (const m of t.messages.values()) {
      if (m.from === t.peer.id && (newest === void 0 || m.id > newest)) newest = m.id;
    }
    const entry = this.#inbox.get(t.peer.id);
    if (entry && entry.unread_count > 0) {
      entry.unread_count = 0;
      this.#renderInbox();
    }
    if (newest === void 0 || t.markedUpTo !== void 0 && t.markedUpTo >= newest) return;
    t.markedUpTo = newest;
    this.client.markRead(t.peer.id, newest).catch((e) => {
      t.markedUpTo = void 0;
      this.#failure(e);
    });
  }
  // --- Sending -----------------------------------------------------------
  #sendFromComposer() {
    const box = byId("body");
    const body = box.value;
    if (!this.#active || body.trim() === "") return;
    box.value = "";
    this.#send({ clientId: newClientId(), to: this.#active, body, failed: false });
  }
  /**
   * Sends (again, for a retry: the same client id never stores two
   * messages). One at a time, so messages keep the order they were typed in.
   */
  #send(o) {
    o.failed = false;
    this.#outgoing.set(o.clientId, o);
    byId("send-error").textContent = "";
    this.#renderThread(true);
    this.#sending = this.#sending.then(() => this.#deliver(o));
  }
  #deliver(o) {
    return this.client.send(o.to, o.body, { clientId: o.clientId }).then((m) => {
      this.#outgoing.delete(o.clientId);
      const t = this.#threads.get(o.to);
      if (t) this.#merge(t, m);
      this.#touchInbox(m, false);
      if (this.#active === o.to) this.#renderThread(true);
    }).catch((e) => {
      o.failed = true;
      if (this.#active === o.to) {
        this.#renderThread();
        byId("send-error").textContent = e instanceof ParleyError && e.status !== 0 ? `Not sent: ${e.problem?.detail ?? e.message}` : "Not sent: cannot reach the server. Retry when you are back online.";
      }
      this.#failure(e);
    });
  }
  // --- Frames --------------------------------------------------------------
  #onMessage(m) {
    if (this.#framed.has(m.id)) console.warn(`parley: duplicate message frame ${m.id}`);
    this.#framed.add(m.id);
    const peerId = m.from === this.me.id ? m.to : m.from;
    const peer = this.#inbox.get(peerId)?.peer ?? { id: peerId, username: "", display_name: "", created_at: m.sent_at };
    this.#merge(this.#threads.get(peerId) ?? this.#thread(peer), m);
    const incoming = m.from !== this.me.id;
    const seen = incoming && this.#active === peerId && document.visibilityState === "visible";
    this.#touchInbox(m, incoming && !seen);
    if (this.#active === peerId) {
      this.#renderThread();
      this.#markRead();
    }
    if (incoming) {
      const name = this.#inbox.get(peerId)?.peer.display_name || "someone";
      this.#announce(`New message from ${name}: ${m.body}`);
    }
  }
  #peerOf(conversationId) {
    for (const [peer, c] of this.#inbox) if (c.conversation_id === conversationId) return peer;
    for (const [peer, t] of this.#threads) {
      const any = t.messages.values().next().value;
      if (any?.conversation_id === conversationId) return peer;
    }
    return void 0;
  }
  #onDelivered(f) {
    const peer = this.#peerOf(f.conversation_id);
    const m = peer ? this.#threads.get(peer)?.messages.get(f.message_id) : void 0;
    if (!m) return;
    m.delivered_at ??= f.at;
    if (this.#active === peer) this.#renderThread();
  }
  #onRead(f) {
    const peer = this.#peerOf(f.conversation_id);
    if (!peer) return;
    if (f.by === this.me.id) {
      const entry = this.#inbox.get(peer);
      if (entry && f.up_to >= entry.last_message.id && entry.unread_count > 0) {
        entry.unread_count = 0;
        this.#renderInbox();
      }
      return;
    }
    const t = this.#threads.get(peer);
    if (!t) return;
    for (const m of t.messages.values()) {
      if (m.from === this.me.id && m.id <= f.up_to) {
        m.read_at ??= f.at;
        m.delivered_at ??= f.at;
      }
    }
    if (this.#active === peer) this.#renderThread();
  }
  /** The sync token could not be served: what frames would have said, REST says. */
  #resync() {
    void this.#loadInbox();
    const active = this.#active ? this.#threads.get(this.#active) : void 0;
    this.#threads.clear();
    if (active) void this.#open(active.peer);
  }
};

// web/src/main.ts
var client = new ParleyClient();
var chat;
function explain(e, action) {
  if (!(e instanceof ParleyError)) return "Something went wrong. Please try again.";
  if (e.status === 0) return "Cannot reach the server. Check the connection and try again.";
  if (e.status === 401) return "Wrong username or password.";
  if (e.status === 409 && action === "register") return "That username is taken.";
  if (e.status === 429 || e.status === 503) {
    const s = Math.ceil((e.retryAfterMs ?? 1e3) / 1e3);
    return `Too many attempts just now. Try again in ${s} s.`;
  }
  if (e.fieldErrors.length > 0) return e.fieldErrors.map((f) => `${f.field.replace("_", " ")} ${f.message}`).join("; ");
  return e.problem?.detail ?? e.message;
}
function showAuth(message = "") {
  chat?.stop();
  chat = void 0;
  show(byId("chat-view"), false);
  show(byId("account"), false);
  show(byId("auth-view"), true);
  byId("auth-error").textContent = message;
  byId("username").focus();
}
function showChat(me) {
  show(byId("auth-view"), false);
  show(byId("account"), true);
  show(byId("chat-view"), true);
  byId("whoami").textContent = `Signed in as ${me.display_name} (@${me.username})`;
  byId("password").value = "";
  chat = new Chat(client, me, () => showAuth("Your session ended. Please sign in again."));
  chat.start();
  byId("search").focus();
}
byId("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const submitter = event.submitter;
  const action = submitter?.value === "register" ? "register" : "login";
  const username = byId("username").value.trim();
  const password = byId("password").value;
  const displayName = byId("display-name").value.trim();
  const error = byId("auth-error");
  error.textContent = "";
  const buttons = [...byId("auth-form").querySelectorAll("button")];
  buttons.forEach((b) => b.disabled = true);
  try {
    const session = action === "register" ? await client.register({ username, password, ...displayName ? { displayName } : {} }) : await client.login(username, password);
    showChat(session.user);
  } catch (e) {
    error.textContent = explain(e, action);
  } finally {
    buttons.forEach((b) => b.disabled = false);
  }
});
byId("logout").addEventListener("click", async () => {
  chat?.stop();
  chat = void 0;
  await client.logout().catch(() => void 0);
  showAuth("You are signed out.");
});
async function boot() {
  try {
    showChat(await client.me());
  } catch (e) {
    showAuth(e instanceof ParleyError && e.status === 401 ? "" : explain(e, "login"));
  }
}
void boot();
