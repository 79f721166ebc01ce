// The chat view: people search, the inbox with unread counts, one open
// conversation that pages back through history, live frames and receipts.
import {
  newClientId,
  ParleyError,
  type Conversation,
  type DeliveredFrame,
  type Message,
  type ParleyClient,
  type ParleySocket,
  type ReadFrame,
  type SocketState,
  type User,
} from "@parley/client";

import { byId, h, show, when } from "./dom.js";

const PAGE = 50;

/** What is loaded of one conversation. */
interface Thread {
  peer: User;
  messages: Map<string, Message>;
  /** `undefined` before the first page; `null` once the oldest page came. */
  cursor: string | null | undefined;
  loading: boolean;
  /** The newest message of the peer this device marked read. */
  markedUpTo: string | undefined;
}

/** A message on its way: shown at once, replaced by the server's once accepted. */
interface Outgoing {
  clientId: string;
  to: string;
  body: string;
  failed: boolean;
}

const STATES: Record<SocketState, string> = {
  connecting: "Connecting…",
  syncing: "Catching up…",
  live: "Connected",
  waiting: "Reconnecting…",
  offline: "Offline: reconnecting when the network is back",
  closed: "",
};

export class Chat {
  #socket: ParleySocket | undefined;
  #inbox = new Map<string, Conversation>();
  #threads = new Map<string, Thread>();
  #outgoing = new Map<string, Outgoing>();
  /** The sends in flight, one after another. */
  #sending: Promise<void> = Promise.resolve();
  /** Message ids that came in frames: a second frame for one is a protocol bug. */
  #framed = new Set<string>();
  #active: string | undefined;
  #inboxLoaded = false;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTries = 0;
  #searchTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #cleanup: Array<() => void> = [];

  constructor(
    private readonly client: ParleyClient,
    private readonly me: User,
    private readonly onSessionEnded: () => void,
  ) {}

  start(): void {
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
      const k = e as KeyboardEvent;
      if (k.key === "Enter" && !k.shiftKey) {
        k.preventDefault();
        this.#sendFromComposer();
      }
    });
    this.#listen(document, "visibilitychange", () => this.#markRead());
    this.#renderInbox();
  }

  stop(): void {
    this.#stopped = true;
    this.#socket?.close();
    for (const off of this.#cleanup) off();
    this.#cleanup = [];
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#searchTimer);
    this.#showState("closed");
    byId("inbox").replaceChildren();
    byId("search-results").replaceChildren();
    byId<HTMLInputElement>("search").value = "";
    this.#close();
  }

  #listen(target: EventTarget, type: string, handler: (e: Event) => void): void {
    target.addEventListener(type, handler);
    this.#cleanup.push(() => target.removeEventListener(type, handler));
  }

  #showState(state: SocketState): void {
    const el = byId("connection");
    el.dataset.state = state;
    el.textContent = STATES[state];
  }

  #announce(text: string): void {
    const a = byId("announcer");
    a.textContent = "";
    // A fresh text node after a tick, so screen readers announce repeats.
    setTimeout(() => (a.textContent = text), 50);
  }

  #failure(e: unknown): void {
    if (e instanceof ParleyError && e.status === 401) {
      this.onSessionEnded();
      return;
    }
    console.warn("parley:", e);
  }

  // --- The inbox -------------------------------------------------------

  async #loadInbox(): Promise<void> {
    try {
      const conversations = await this.client.inbox();
      if (this.#stopped) return;
      this.#inboxLoaded = true;
      const fresh = new Map<string, Conversation>();
      for (const c of conversations) {
        const local = this.#inbox.get(c.peer.id);
        // A frame may have brought something newer than the store had.
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
  #refreshInboxSoon(): void {
    if (this.#refreshTimer !== undefined || this.#refreshTries >= 10) return;
    this.#refreshTries++;
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      void this.#loadInbox();
    }, 300 * this.#refreshTries);
  }

  #renderInbox(): void {
    const list = byId("inbox");
    const items = [...this.#inbox.values()].sort((a, b) => (a.last_message.id < b.last_message.id ? 1 : -1));
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
            "aria-current": c.peer.id === this.#active ? "true" : undefined,
          },
          h("span", { class: "name" }, c.peer.display_name || "New conversation", h("span", { class: "visually-hidden" }, label)),
          unread,
          h("span", { class: "preview" }, from + c.last_message.body),
        );
        button.addEventListener("click", () => void this.#open(c.peer));
        return h("li", {}, button);
      }),
    );
    show(byId("inbox-empty"), items.length === 0);
  }

  /** The inbox entry for `m`'s conversation moves on to `m`. */
  #touchInbox(m: Message, countUnread: boolean): void {
    const peerId = m.from === this.me.id ? m.to : m.from;
    const known = this.#inbox.get(peerId);
    const peer = known?.peer ?? this.#threads.get(peerId)?.peer;
    const entry: Conversation = known ?? {
      conversation_id: m.conversation_id,
      peer: peer ?? { id: peerId, username: "", display_name: "", created_at: m.sent_at },
      last_message: m,
      unread_count: 0,
    };
    if (m.id >= entry.last_message.id) entry.last_message = m;
    if (countUnread) entry.unread_count += 1;
    this.#inbox.set(peerId, entry);
    if (entry.peer.username === "") this.#refreshInboxSoon();
    this.#renderInbox();
  }

  // --- People search ---------------------------------------------------

  #searchSoon(delay = 200): void {
    clearTimeout(this.#searchTimer);
    this.#searchTimer = setTimeout(() => void this.#search(), delay);
  }

  async #search(): Promise<void> {
    const q = byId<HTMLInputElement>("search").value.trim();
    const list = byId("search-results");
    if (!/^[A-Za-z0-9_.]{1,32}$/.test(q)) {
      list.replaceChildren();
      return;
    }
    try {
      const users = (await this.client.searchUsers(q)).filter((u) => u.id !== this.me.id);
      if (byId<HTMLInputElement>("search").value.trim() !== q) return;
      list.replaceChildren(
        ...(users.length === 0
          ? [h("li", { class: "hint" }, "Nobody by that name.")]
          : users.map((u) => {
              const b = h(
                "button",
                { type: "button", "data-user": u.username },
                h("span", { class: "name" }, u.display_name),
                h("span", { class: "preview" }, `@${u.username}`),
              );
              b.addEventListener("click", () => {
                list.replaceChildren();
                byId<HTMLInputElement>("search").value = "";
                void this.#open(u);
              });
              return h("li", {}, b);
            })),
      );
    } catch (e) {
      this.#failure(e);
    }
  }

  // --- One conversation --------------------------------------------------

  #thread(peer: User): Thread {
    let t = this.#threads.get(peer.id);
    if (!t) {
      t = { peer, messages: new Map(), cursor: undefined, loading: false, markedUpTo: undefined };
      this.#threads.set(peer.id, t);
    } else if (peer.username) {
      t.peer = peer;
    }
    return t;
  }

  async #open(peer: User): Promise<void> {
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
    if (t.cursor === undefined) await this.#loadOlder();
    this.#markRead();
  }

  #close(): void {
    this.#active = undefined;
    show(byId("conversation"), false);
    show(byId("placeholder"), true);
    this.#renderInbox();
  }

  async #loadOlder(): Promise<void> {
    const peerId = this.#active;
    const t = peerId ? this.#threads.get(peerId) : undefined;
    if (!t || t.loading || t.cursor === null) return;
    t.loading = true;
    const first = t.cursor === undefined;
    try {
      const page = await this.client.history(t.peer.id, {
        limit: PAGE,
        ...(t.cursor ? { before: t.cursor } : {}),
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
    // Older messages go on top: keep what the reader was looking at in place.
    if (!first) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    this.#markRead();
  }

  #merge(t: Thread, m: Message): void {
    const known = t.messages.get(m.id);
    t.messages.set(m.id, {
      ...m,
      delivered_at: m.delivered_at ?? known?.delivered_at ?? null,
      read_at: m.read_at ?? known?.read_at ?? null,
    });
  }

  #renderThread(toBottom = false): void {
    const t = this.#active ? this.#threads.get(this.#active) : undefined;
    if (!t) return;
    const scroller = byId("scroller");
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
    const sorted = [...t.messages.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const items = sorted.map((m) => this.#messageItem(m));
    for (const o of this.#outgoing.values()) {
      if (o.to === t.peer.id) items.push(this.#outgoingItem(o));
    }
    byId("messages").replaceChildren(...items);
    show(byId("older"), t.cursor !== null);
    show(byId("history-start"), t.cursor === null);
    if (toBottom || atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  #messageItem(m: Message): HTMLLIElement {
    const mine = m.from === this.me.id;
    const status = m.read_at ? "read" : m.delivered_at ? "delivered" : "sent";
    const mark = mine
      ? h(
          "span",
          { class: "mark", title: status === "read" ? "Read" : status === "delivered" ? "Delivered" : "Sent" },
          status === "read" ? "✓✓" : status === "delivered" ? "✓" : "",
          h("span", { class: "visually-hidden" }, status === "sent" ? "Sent" : status === "read" ? "Read" : "Delivered"),
        )
      : "";
    return h(
      "li",
      { class: mine ? "msg mine" : "msg", "data-id": m.id, "data-status": mine ? status : undefined },
      h("p", { class: "text" }, m.body),
      h("p", { class: "meta" }, h("time", { datetime: m.sent_at }, when(m.sent_at)), mark),
    );
  }

  #outgoingItem(o: Outgoing): HTMLLIElement {
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
      meta,
    );
  }

  /** Marks the open conversation read up to the peer's newest message, if the page is seen. */
  #markRead(): void {
    const t = this.#active ? this.#threads.get(this.#active) : undefined;
    if (!t || document.visibilityState !== "visible") return;
    let newest: string | undefined;
    for (const m of t.messages.values()) {
      if (m.from === t.peer.id && (newest === undefined || m.id > newest)) newest = m.id;
    }
    const entry = this.#inbox.get(t.peer.id);
    if (entry && entry.unread_count > 0) {
      entry.unread_count = 0;
      this.#renderInbox();
    }
    if (newest === undefined || (t.markedUpTo !== undefined && t.markedUpTo >= newest)) return;
    t.markedUpTo = newest;
    this.client.markRead(t.peer.id, newest).catch((e: unknown) => {
      t.markedUpTo = undefined; // tried again on the next occasion
      this.#failure(e);
    });
  }

  // --- Sending -----------------------------------------------------------

  #sendFromComposer(): void {
    const box = byId<HTMLTextAreaElement>("body");
    const body = box.value;
    if (!this.#active || body.trim() === "") return;
    box.value = "";
    this.#send({ clientId: newClientId(), to: this.#active, body, failed: false });
  }

  /**
   * Sends (again, for a retry: the same client id never stores two
   * messages). One at a time, so messages keep the order they were typed in.
   */
  #send(o: Outgoing): void {
    o.failed = false;
    this.#outgoing.set(o.clientId, o);
    byId("send-error").textContent = "";
    this.#renderThread(true);
    this.#sending = this.#sending.then(() => this.#deliver(o));
  }

  #deliver(o: Outgoing): Promise<void> {
    return this.client
      .send(o.to, o.body, { clientId: o.clientId })
      .then((m) => {
        this.#outgoing.delete(o.clientId);
        const t = this.#threads.get(o.to);
        if (t) this.#merge(t, m);
        this.#touchInbox(m, false);
        if (this.#active === o.to) this.#renderThread(true);
      })
      .catch((e: unknown) => {
        o.failed = true;
        if (this.#active === o.to) {
          this.#renderThread();
          byId("send-error").textContent =
            e instanceof ParleyError && e.status !== 0
              ? `Not sent: ${e.problem?.detail ?? e.message}`
              : "Not sent: cannot reach the server. Retry when you are back online.";
        }
        this.#failure(e);
      });
  }

  // --- Frames --------------------------------------------------------------

  #onMessage(m: Message): void {
    if (this.#framed.has(m.id)) console.warn(`parley: duplicate message frame ${m.id}`);
    this.#framed.add(m.id);
    const peerId = m.from === this.me.id ? m.to : m.from;
    // Kept even before the conversation is opened: the store may not have
    // projected it yet when its first page is read.
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

  #peerOf(conversationId: string): string | undefined {
    for (const [peer, c] of this.#inbox) if (c.conversation_id === conversationId) return peer;
    for (const [peer, t] of this.#threads) {
      const any = t.messages.values().next().value;
      if (any?.conversation_id === conversationId) return peer;
    }
    return undefined;
  }

  #onDelivered(f: DeliveredFrame): void {
    const peer = this.#peerOf(f.conversation_id);
    const m = peer ? this.#threads.get(peer)?.messages.get(f.message_id) : undefined;
    if (!m) return;
    m.delivered_at ??= f.at;
    if (this.#active === peer) this.#renderThread();
  }

  #onRead(f: ReadFrame): void {
    const peer = this.#peerOf(f.conversation_id);
    if (!peer) return;
    if (f.by === this.me.id) {
      // Read on another device.
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
  #resync(): void {
    void this.#loadInbox();
    const active = this.#active ? this.#threads.get(this.#active) : undefined;
    this.#threads.clear();
    if (active) void this.#open(active.peer);
  }
}
