import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import { ParleySocket, type SocketOptions } from "../../src/socket.js";
import type { Message, ServerFrame, SocketEvents } from "../../src/index.js";
import { FakeWebSocket, waitFor } from "./fake-websocket.js";

const ME = "0190aaaa-0000-7000-8000-000000000001";
const PEER = "0190aaaa-0000-7000-8000-000000000002";

function message(id: string, to = ME, from = PEER): Message {
  return { id, conversation_id: "c1", from, to, body: `body ${id}`, sent_at: "2026-01-01T00:00:00Z" };
}

function socket(opts: SocketOptions & { token?: string } = {}): ParleySocket {
  const { token, ...rest } = opts;
  return new ParleySocket(
    { url: "ws://parley.test/v1/ws", token: () => token, WebSocket: FakeWebSocket },
    { initialDelayMs: 4, maxDelayMs: 40, random: () => 1, watchNetwork: false, ...rest },
  );
}

/** Opens the current fake socket and sends `ready` (+ `synced`). */
async function serve(seq: string, synced = true): Promise<FakeWebSocket> {
  await waitFor(() => FakeWebSocket.instances.length > 0 && FakeWebSocket.last().readyState === 0, "a socket");
  const ws = FakeWebSocket.last();
  ws.open();
  ws.receive({ type: "ready", user_id: ME, seq });
  if (synced) ws.receive({ type: "synced", seq });
  return ws;
}

function collect<K extends keyof SocketEvents>(s: ParleySocket, event: K): SocketEvents[K][] {
  const out: SocketEvents[K][] = [];
  s.on(event, (v) => {
    out.push(v);
  });
  return out;
}

beforeEach(() => {
  FakeWebSocket.instances = [];
});

let open: ParleySocket[] = [];
afterEach(() => {
  for (const s of open) s.close();
  open = [];
});
function started(s: ParleySocket): ParleySocket {
  open.push(s);
  return s.connect();
}

describe("since", () => {
  test("moves only after the app has processed a frame", async () => {
    const s = started(socket());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    s.on("message", () => gate);
    const ws = await serve("s0");
    await waitFor(() => s.since === "s0", "ready's seq");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.since, "s0", "not processed yet");
    assert.deepEqual(ws.acks(), [], "no ack before the app is done");
    release();
    await waitFor(() => s.since === "s1", "since to move");
    assert.deepEqual(ws.acks(), ["m1"]);
  });

  test("a reconnect resumes from the last processed frame (query with the cookie)", async () => {
    const s = started(socket());
    const ws = await serve("s0");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    ws.receive({ type: "delivered", conversation_id: "c1", message_id: "m0", at: "t", seq: "s2" });
    await waitFor(() => s.since === "s2", "since");
    ws.serverClose(1006);
    await waitFor(() => FakeWebSocket.instances.length === 2, "a second socket");
    assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), "s2");
    assert.equal(new URL(FakeWebSocket.instances[0]!.url).searchParams.get("since"), null);
  });

  test("with a token, the auth frame carries it and since", async () => {
    const s = started(socket({ token: "tok", since: "s9" }));
    await waitFor(() => FakeWebSocket.instances.length === 1, "a socket");
    const ws = FakeWebSocket.last();
    assert.equal(new URL(ws.url).search, "", "nothing secret or stale in the URL");
    ws.open();
    assert.deepEqual(ws.sent[0], { type: "auth", token: "tok", since: "s9" });
    assert.equal(s.since, "s9");
  });

  test("frames are processed one at a time, in order", async () => {
    const s = started(socket());
    const seen: string[] = [];
    s.on("message", async (f) => {
      seen.push(`start ${f.message.id}`);
      await new Promise((r) => setTimeout(r, f.message.id === "m1" ? 15 : 1));
      seen.push(`end ${f.message.id}`);
    });
    const ws = await serve("s0");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    ws.receive({ type: "message", message: message("m2"), seq: "s2" });
    await waitFor(() => s.since === "s2", "both");
    assert.deepEqual(seen, ["start m1", "end m1", "start m2", "end m2"]);
  });
});

describe("acks", () => {
  test("only messages addressed to the user, and only with autoAck", async () => {
    const s = started(socket());
    const ws = await serve("s0");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    ws.receive({ type: "message", message: message("m2", PEER, ME), seq: "s2" });
    await waitFor(() => s.since === "s2", "frames");
    assert.deepEqual(ws.acks(), ["m1"]);

    FakeWebSocket.instances = [];
    const manual = started(socket({ autoAck: false }));
    const ws2 = await serve("s0");
    ws2.receive({ type: "message", message: message("m3"), seq: "s1" });
    await waitFor(() => manual.since === "s1", "frame");
    assert.deepEqual(ws2.acks(), []);
  });

  test("acks that may have been lost with a drop go again on the next socket", async () => {
    const s = started(socket());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    s.on("message", (f) => (f.message.id === "m2" ? gate : undefined));
    const ws = await serve("s0");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    ws.receive({ type: "message", message: message("m2"), seq: "s2" });
    await waitFor(() => ws.acks().length === 1, "m1's ack");
    // m2 is still being processed when the socket drops: its ack waits.
    ws.serverClose(1006);
    release();
    await waitFor(() => s.since === "s2", "m2 processed after the drop");
    const next = await serve("s2");
    await waitFor(() => next.acks().length === 2, "acks again");
    assert.deepEqual(next.acks().sort(), ["m1", "m2"]);
  });
});

describe("close codes", () => {
  test("4401: the session ended, no reconnect", async () => {
    const s = started(socket());
    const unauthorized = collect(s, "unauthorized");
    const ws = await serve("s0");
    ws.serverClose(4401, "session ended");
    await waitFor(() => s.state === "closed", "closed");
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(unauthorized.length, 1);
    assert.equal(unauthorized[0]!.retryInMs, null);
  });

  test("4409: since is dropped, the socket connects without it, then resync fires", async () => {
    const s = started(socket({ since: "stale" }));
    const resync = collect(s, "resync");
    await waitFor(() => FakeWebSocket.instances.length === 1, "a socket");
    assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), "stale");
    FakeWebSocket.last().open();
    FakeWebSocket.last().serverClose(4409, "cannot sync from that token");
    await waitFor(() => FakeWebSocket.instances.length === 2, "a second socket");
    assert.equal(s.since, undefined);
    assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), null);
    assert.equal(resync.length, 0, "not before the new socket is ready");
    await serve("fresh");
    await waitFor(() => resync.length === 1, "resync");
    assert.equal(resync[0]!.seq, "fresh");
  });

  for (const code of [4008, 1013, 1001, 1009, 1006, 1011]) {
    test(`${code}: reconnect with since`, async () => {
      const s = started(socket());
      const disconnects = collect(s, "disconnect");
      const ws = await serve("s0");
      ws.receive({ type: "read", conversation_id: "c1", up_to: "m1", by: PEER, at: "t", seq: "s1" });
      await waitFor(() => s.since === "s1", "since");
      ws.serverClose(code);
      await waitFor(() => FakeWebSocket.instances.length === 2, "a second socket");
      assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), "s1");
      assert.equal(disconnects[0]!.code, code);
      assert.ok(disconnects[0]!.retryInMs! > 0);
    });
  }

  test("4429: retried, but not sooner than 10 s", async () => {
    const s = started(socket());
    const disconnects = collect(s, "disconnect");
    const ws = await serve("s0");
    ws.serverClose(4429, "too many sockets");
    await waitFor(() => disconnects.length === 1, "disconnect");
    assert.ok(disconnects[0]!.retryInMs! >= 10_000);
    assert.equal(s.state, "waiting");
  });

  test("backoff doubles while attempts fail and starts over once synced", async () => {
    const s = started(socket());
    const delays = collect(s, "disconnect");
    for (let i = 0; i < 4; i++) {
      await waitFor(() => FakeWebSocket.instances.length === i + 1, "a socket");
      FakeWebSocket.last().serverClose(1006);
    }
    await waitFor(() => delays.length === 4, "4 drops");
    assert.deepEqual(
      delays.map((d) => d.retryInMs),
      [4, 8, 16, 32],
    );
    const ws = await serve("s0");
    await waitFor(() => s.state === "live", "live");
    ws.serverClose(1006);
    await waitFor(() => delays.length === 5, "drop");
    assert.equal(delays[4]!.retryInMs, 4);
  });
});

describe("failures", () => {
  test("a listener that throws drops the socket; the frame comes again", async () => {
    const s = started(socket());
    const errors = collect(s, "error");
    let fail = true;
    const processed: string[] = [];
    s.on("message", (f) => {
      if (fail) throw new Error("app failed");
      processed.push(f.message.id);
    });
    const ws = await serve("s0");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    ws.receive({ type: "message", message: message("m2"), seq: "s2" });
    await waitFor(() => FakeWebSocket.instances.length === 2, "a new socket");
    assert.equal(s.since, "s0", "no frame after the failed one counts");
    assert.deepEqual(ws.acks(), []);
    assert.equal(errors.length, 1);
    assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), "s0");
    fail = false;
    const next = await serve("s0", false);
    next.receive({ type: "message", message: message("m1"), seq: "s1" });
    next.receive({ type: "message", message: message("m2"), seq: "s2" });
    await waitFor(() => s.since === "s2", "processed");
    assert.deepEqual(processed, ["m1", "m2"]);
  });

  test("an error frame is reported and the socket stays", async () => {
    const s = started(socket());
    const errors = collect(s, "error");
    const ws = await serve("s0");
    ws.receive({ type: "error", detail: "unknown message" });
    await waitFor(() => errors.length === 1, "error");
    assert.equal((errors[0] as Error).message, "unknown message");
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(s.state, "live");
  });

  test("a socket that stops answering is dropped after a ping", async () => {
    const s = started(socket({ heartbeatMs: 30, heartbeatTimeoutMs: 30 }));
    const ws = await serve("s0");
    await waitFor(() => ws.sent.some((f) => f.type === "ping"), "a ping", 1000);
    await waitFor(() => FakeWebSocket.instances.length === 2, "a new socket", 1000);
    assert.equal(ws.closedWith?.code, 4000);
    assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), "s0");
    s.close();
  });

  test("a pong keeps the socket", async () => {
    // Generous against a busy machine: the socket may not be dropped
    // between a ping and its pong.
    const s = started(socket({ heartbeatMs: 60, heartbeatTimeoutMs: 2000 }));
    const ws = await serve("s0");
    for (let i = 0; i < 3; i++) {
      const pings = ws.sent.filter((f) => f.type === "ping").length;
      await waitFor(() => ws.sent.filter((f) => f.type === "ping").length > pings, "a ping", 3000);
      ws.receive({ type: "pong" } as ServerFrame);
    }
    assert.equal(FakeWebSocket.instances.length, 1);
    s.close();
  });
});

describe("the browser's network events", () => {
  class FakeWindow extends EventTarget {}
  const g = globalThis as { window?: unknown; navigator?: unknown };
  let win: FakeWindow;
  let nav: { onLine: boolean };
  beforeEach(() => {
    win = new FakeWindow();
    nav = { onLine: true };
    Object.defineProperty(globalThis, "window", { value: win, configurable: true });
    Object.defineProperty(globalThis, "navigator", { value: nav, configurable: true });
  });
  afterEach(() => {
    delete g.window;
    delete g.navigator;
  });

  test("offline drops the socket and waits; online resumes at once", async () => {
    const s = started(socket({ watchNetwork: true, initialDelayMs: 60_000, maxDelayMs: 60_000 }));
    const states = collect(s, "state");
    const ws = await serve("s0");
    ws.receive({ type: "message", message: message("m1"), seq: "s1" });
    await waitFor(() => s.since === "s1", "frame");
    nav.onLine = false;
    win.dispatchEvent(new Event("offline"));
    assert.equal(s.state, "offline");
    assert.equal(ws.closedWith?.code, 4000);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(FakeWebSocket.instances.length, 1, "no attempt while offline");
    nav.onLine = true;
    win.dispatchEvent(new Event("online"));
    await waitFor(() => FakeWebSocket.instances.length === 2, "reconnect without waiting out a backoff");
    assert.equal(new URL(FakeWebSocket.last().url).searchParams.get("since"), "s1");
    await serve("s1");
    await waitFor(() => s.state === "live", "live");
    assert.deepEqual(states.slice(-4), ["offline", "connecting", "syncing", "live"]);
  });
});
