// The package against a real `parley dev`: sessions, sends, history, the
// inbox, and the socket through drops, restarts and every close code the
// server can be made to send.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import WebSocket from "ws";

import { ParleyClient, ParleyError, type ParleySocket, type SocketOptions } from "../../src/index.js";
import { CuttingProxy, Parley, eventually } from "../../../testing/parley.js";

const PASSWORD = "correct horse battery";
let parley: Parley;
let n = 0;

before(async () => {
  parley = await Parley.start();
});
after(async () => {
  await parley?.close();
});
// A failed test must not leave a socket reconnecting (the run would not end).
const sockets: ParleySocket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

function client(baseUrl = parley.url, token?: string): ParleyClient {
  const c = new ParleyClient({ baseUrl, WebSocket, ...(token ? { token } : {}) });
  const connect = c.connect.bind(c);
  c.connect = (options) => {
    const s = connect(options);
    sockets.push(s);
    return s;
  };
  return c;
}

async function user(name: string, baseUrl?: string): Promise<ParleyClient> {
  const c = client(baseUrl);
  await c.register({ username: `${name}${++n}_${process.pid}`, password: PASSWORD });
  return c;
}

/** A socket that records what it processed. */
function record(s: ParleySocket) {
  const messages: string[] = [];
  const delivered: string[] = [];
  const reads: string[] = [];
  s.on("message", (f) => {
    messages.push(f.message.id);
  });
  s.on("delivered", (f) => {
    delivered.push(f.message_id);
  });
  s.on("read", (f) => {
    reads.push(f.up_to);
  });
  return { messages, delivered, reads };
}

function live(c: ParleyClient, options: SocketOptions = {}): Promise<ParleySocket> {
  const s = c.connect({ initialDelayMs: 50, maxDelayMs: 1000, ...options });
  return new Promise((resolve) => {
    const off = s.on("synced", () => {
      off();
      resolve(s);
    });
  });
}

describe("REST", () => {
  test("register, find, send, page through history, inbox, read, logout", async () => {
    const alice = await user("alice");
    const bob = await user("bob");
    const a = alice.user!;
    const b = bob.user!;
    const found = await alice.searchUsers(b.username.slice(0, 5));
    assert.ok(found.some((u) => u.id === b.id));

    const sent = [];
    for (let i = 0; i < 7; i++) sent.push(await alice.send(b.id, `hello ${i}`));
    assert.equal(sent[0]!.from, a.id);

    await eventually(async () => (await bob.inbox())[0]?.unread_count === 7, "bob's inbox");
    const [conv] = await bob.inbox();
    assert.equal(conv!.peer.id, a.id);
    assert.equal(conv!.last_message.id, sent[6]!.id);

    const pages: string[][] = [];
    for await (const page of bob.pages(a.id, { limit: 3 })) pages.push(page.map((m) => m.body));
    assert.deepEqual(pages, [
      ["hello 6", "hello 5", "hello 4"],
      ["hello 3", "hello 2", "hello 1"],
      ["hello 0"],
    ]);

    await bob.markRead(a.id, sent[6]!.id);
    await eventually(async () => (await bob.inbox())[0]?.unread_count === 0, "read");

    await bob.logout();
    await assert.rejects(client(parley.url, undefined).me(), (e: ParleyError) => e.status === 401);
    const again = client();
    await again.login(b.username, PASSWORD);
    assert.equal((await again.me()).id, b.id);
  });

  test("a send repeated with its client_id stores one message", async () => {
    const alice = await user("alice");
    const bob = await user("bob");
    const first = await alice.send(bob.user!.id, "once", { clientId: "retry-key" });
    const again = await alice.send(bob.user!.id, "once", { clientId: "retry-key" });
    assert.equal(again.id, first.id);
    await assert.rejects(
      alice.send(bob.user!.id, "another body", { clientId: "retry-key" }),
      (e: ParleyError) => e.status === 409,
    );
    await eventually(async () => (await bob.history(alice.user!.id)).messages.length === 1, "history");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await bob.history(alice.user!.id)).messages.length, 1);
  });

  test("errors are ParleyErrors with the problem", async () => {
    const alice = await user("alice");
    await assert.rejects(alice.send(alice.user!.id, "me"), (e: ParleyError) => {
      assert.equal(e.status, 422);
      assert.equal(e.problem?.status, 422);
      return true;
    });
    await assert.rejects(client().login("nobody_here", PASSWORD), (e: ParleyError) => e.status === 401);
  });
});

describe("socket", () => {
  test("live messages, acks become delivered receipts, reads reach the sender", async () => {
    const alice = await user("alice");
    const bob = await user("bob");
    const as = await live(alice);
    const bs = await live(bob);
    const got = { a: record(as), b: record(bs) };
    const m = await alice.send(bob.user!.id, "hi bob");
    await eventually(() => got.b.messages.includes(m.id), "bob gets it");
    await eventually(() => got.a.delivered.includes(m.id), "alice sees it delivered");
    await bob.markRead(alice.user!.id, m.id);
    await eventually(() => got.a.reads.includes(m.id), "alice sees it read");
    assert.deepEqual(got.a.messages, [m.id], "the sender's devices see it too");
    as.close();
    bs.close();
  });

  test("connections cut at random moments: every message and receipt exactly once", { timeout: 120_000 }, async () => {
    const proxy = await CuttingProxy.start(parley.url);
    try {
      const alice = await user("alice");
      const bob = client(proxy.url);
      await bob.register({ username: `bob${++n}_${process.pid}`, password: PASSWORD });
      const as = await live(alice);
      const bs = await live(bob, { initialDelayMs: 10, maxDelayMs: 200 });
      const got = { a: record(as), b: record(bs) };
      const sent: string[] = [];
      let cutting = true;
      const cutter = (async () => {
        while (cutting) {
          await new Promise((r) => setTimeout(r, 50 + Math.random() * 250));
          if (cutting) proxy.cut();
        }
      })();
      // At least 60 messages, and on until the connection was cut five
      // times: how many cuts a fixed number of sends meets depends on how
      // fast this machine sends.
      for (let i = 0; i < 600 && (i < 60 || proxy.cuts < 5); i++) {
        sent.push((await alice.send(bob.user!.id, `m${i}`)).id);
        await new Promise((r) => setTimeout(r, Math.random() * 40));
      }
      cutting = false;
      await cutter;
      await eventually(() => got.b.messages.length >= sent.length, "bob has every message", 60_000);
      await eventually(() => got.a.delivered.length >= sent.length, "alice has every receipt", 60_000);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(proxy.cuts >= 5, `cut ${proxy.cuts} times`);
      assert.deepEqual(got.b.messages, sent, "each once, in order");
      assert.deepEqual([...got.a.delivered].sort(), [...sent].sort(), "each receipt once");
      as.close();
      bs.close();
    } finally {
      await proxy.close();
    }
  });

  test("a server restart (1001): the socket comes back and misses nothing", { timeout: 60_000 }, async () => {
    const alice = await user("alice");
    const bob = await user("bob");
    const bs = await live(bob);
    const got = record(bs);
    const codes: number[] = [];
    bs.on("disconnect", (d) => {
      codes.push(d.code);
    });
    const before = await alice.send(bob.user!.id, "before");
    await eventually(() => got.messages.includes(before.id), "first message");
    await parley.restart();
    const afterIds = [];
    for (let i = 0; i < 5; i++) afterIds.push((await alice.send(bob.user!.id, `after ${i}`)).id);
    await eventually(() => got.messages.length === 6, "the rest", 30_000);
    assert.deepEqual(got.messages, [before.id, ...afterIds]);
    assert.equal(codes[0], 1001);
    bs.close();
  });

  test("4409: a token the server cannot serve; resync once connected without it", async () => {
    const bob = await user("bob");
    const s = bob.connect({ since: "not-a-token", initialDelayMs: 20 });
    const codes: number[] = [];
    s.on("disconnect", (d) => {
      codes.push(d.code);
    });
    let resynced = false;
    s.on("resync", () => {
      resynced = true;
    });
    await eventually(() => resynced, "resync");
    assert.deepEqual(codes, [4409]);
    assert.notEqual(s.since, "not-a-token");
    await eventually(() => s.state === "live", "live");
    s.close();
  });

  test("4401: a logout ends the session's sockets for good", async () => {
    const bob = await user("bob");
    const device = client(parley.url, bob.token);
    const s = await live(device);
    let ended = false;
    s.on("unauthorized", () => {
      ended = true;
    });
    await bob.logout();
    await eventually(() => ended, "4401", 15_000);
    assert.equal(s.state, "closed");
  });

  test("4429: too many sockets; the next try waits at least 10 s", async () => {
    const strict = await Parley.start(["--max-sockets-per-user", "1"]);
    try {
      const bob = await user("bob", strict.url);
      const first = await live(bob);
      const second = bob.connect();
      const d = await new Promise<{ code: number; retryInMs: number | null }>((r) => second.on("disconnect", r));
      assert.equal(d.code, 4429);
      assert.ok(d.retryInMs !== null && d.retryInMs >= 10_000);
      second.close();
      first.close();
    } finally {
      await strict.close();
    }
  });
});
