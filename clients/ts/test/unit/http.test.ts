import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Backoff, ParleyClient, ParleyError, newClientId, parseRetryAfter } from "../../src/index.js";

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
  credentials: string | undefined;
}

/** A fetch that answers from a script, one reply per call. */
function scripted(replies: Array<{ status: number; body?: unknown; headers?: Record<string, string> } | Error>) {
  const calls: Call[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    calls.push({
      url: String(input),
      method: init?.method ?? "GET",
      headers: init?.headers as Record<string, string>,
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
      credentials: init?.credentials,
    });
    const r = replies.shift();
    if (!r) throw new Error("unexpected request");
    if (r instanceof Error) throw r;
    const problem = r.status >= 400;
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), {
      status: r.status,
      headers: {
        "content-type": problem ? "application/problem+json" : "application/json",
        ...r.headers,
      },
    });
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

const msg = {
  id: "0190aaaa-0000-7000-8000-00000000000a",
  conversation_id: "c",
  from: "a",
  to: "b",
  body: "hi",
  sent_at: "2026-01-01T00:00:00Z",
};
const busy = (status: number, retryAfter = "0") => ({
  status,
  body: { type: "urn:parley:problem:unavailable", title: "Unavailable", status },
  headers: { "retry-after": retryAfter },
});

function client(fetch: typeof globalThis.fetch, extra: Partial<ConstructorParameters<typeof ParleyClient>[0]> = {}) {
  return new ParleyClient({
    baseUrl: "http://parley.test",
    token: "tok",
    fetch,
    retry: { initialDelayMs: 1, maxDelayMs: 1000 },
    ...extra,
  });
}

describe("send", () => {
  test("retries 503 and 429 with the same client_id, then returns the message", async () => {
    const { fetch, calls } = scripted([busy(503), busy(429), { status: 202, body: { message: msg } }]);
    const m = await client(fetch).send("b", "hi");
    assert.deepEqual(m, msg);
    assert.equal(calls.length, 3);
    const ids = calls.map((c) => (c.body as { client_id: string }).client_id);
    assert.match(ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual(new Set(ids).size, 1, "one client_id for every try");
    assert.deepEqual(calls[0]!.body, { to: "b", body: "hi", client_id: ids[0] });
  });

  test("a network failure is retried too; a given client_id is kept", async () => {
    const { fetch, calls } = scripted([new TypeError("fetch failed"), { status: 202, body: { message: msg } }]);
    await client(fetch).send("b", "hi", { clientId: "mine" });
    assert.deepEqual(
      calls.map((c) => (c.body as { client_id: string }).client_id),
      ["mine", "mine"],
    );
  });

  test("waits Retry-After before retrying", async () => {
    const { fetch, calls } = scripted([busy(503, "1"), { status: 202, body: { message: msg } }]);
    const started = Date.now();
    await client(fetch).send("b", "hi");
    assert.ok(Date.now() - started >= 990, "waited a second");
    assert.equal(calls.length, 2);
  });

  test("a Retry-After beyond the longest wait is not waited out", async () => {
    const { fetch, calls } = scripted([busy(429, "3600")]);
    await assert.rejects(client(fetch).send("b", "hi"), (e: ParleyError) => {
      assert.equal(e.status, 429);
      assert.equal(e.retryAfterMs, 3_600_000);
      return true;
    });
    assert.equal(calls.length, 1);
  });

  test("gives up after maxAttempts", async () => {
    const { fetch, calls } = scripted([busy(503), busy(503), busy(503)]);
    const c = client(fetch, { retry: { maxAttempts: 3, initialDelayMs: 1 } });
    await assert.rejects(c.send("b", "hi"), (e: ParleyError) => e.status === 503);
    assert.equal(calls.length, 3);
  });

  test("other errors are not retried and carry the problem", async () => {
    const { fetch, calls } = scripted([
      {
        status: 422,
        body: {
          type: "urn:parley:problem:validation",
          title: "Invalid request",
          status: 422,
          errors: [{ field: "body", message: "must not be empty" }],
        },
      },
    ]);
    await assert.rejects(client(fetch).send("b", " "), (e: ParleyError) => {
      assert.equal(e.status, 422);
      assert.equal(e.type, "urn:parley:problem:validation");
      assert.deepEqual(e.fieldErrors, [{ field: "body", message: "must not be empty" }]);
      assert.equal(e.retryable, false);
      return true;
    });
    assert.equal(calls.length, 1);
  });
});

describe("authentication", () => {
  test("token mode sends the bearer token and no cookie", async () => {
    const user = { id: "u", username: "alice", display_name: "alice", created_at: "t" };
    const { fetch, calls } = scripted([
      { status: 200, body: { user, token: "new" } },
      { status: 200, body: { user } },
    ]);
    const c = new ParleyClient({ baseUrl: "http://parley.test", fetch });
    assert.equal(c.auth, "token", "outside a browser");
    await c.login("alice", "correct horse");
    assert.equal(c.token, "new");
    await c.me();
    assert.equal(calls[1]!.headers.authorization, "Bearer new");
    assert.equal(calls[1]!.credentials, "omit");
    assert.equal(c.user?.username, "alice");
  });

  test("cookie mode keeps no token and lets the browser send the cookie", async () => {
    const user = { id: "u", username: "alice", display_name: "alice", created_at: "t" };
    const { fetch, calls } = scripted([{ status: 201, body: { user, token: "secret" } }, { status: 204 }]);
    const c = new ParleyClient({ baseUrl: "http://parley.test", fetch, auth: "cookie" });
    await c.register({ username: "alice", password: "correct horse", displayName: "Alice" });
    assert.equal(c.token, undefined);
    assert.deepEqual(calls[0]!.body, { username: "alice", password: "correct horse", display_name: "Alice" });
    assert.equal(calls[0]!.credentials, "include");
    await c.logout();
    assert.equal(calls[1]!.headers.authorization, undefined);
    assert.equal(calls[1]!.method, "POST");
  });

  test("register is not retried: a lost answer may have made the account", async () => {
    const { fetch, calls } = scripted([busy(503)]);
    await assert.rejects(client(fetch).register({ username: "bob", password: "x".repeat(8) }));
    assert.equal(calls.length, 1);
  });

  test("no answer at all is status 0", async () => {
    const { fetch } = scripted([new TypeError("fetch failed")]);
    await assert.rejects(
      client(fetch).register({ username: "bob", password: "x".repeat(8) }),
      (e: ParleyError) => e.status === 0 && e.retryable,
    );
  });
});

describe("reads", () => {
  test("history pages follow the cursor; query strings are encoded", async () => {
    const { fetch, calls } = scripted([
      { status: 200, body: { messages: [msg], next_cursor: "c 1" } },
      { status: 200, body: { messages: [msg], next_cursor: null } },
      { status: 200, body: { users: [] } },
    ]);
    const c = client(fetch);
    const pages: number[] = [];
    for await (const page of c.pages("peer/1", { limit: 1 })) pages.push(page.length);
    assert.deepEqual(pages, [1, 1]);
    assert.equal(calls[0]!.url, "http://parley.test/v1/conversations/peer%2F1/messages?limit=1");
    assert.equal(calls[1]!.url, "http://parley.test/v1/conversations/peer%2F1/messages?before=c+1&limit=1");
    await c.searchUsers("al");
    assert.equal(calls[2]!.url, "http://parley.test/v1/users?query=al");
  });
});

describe("helpers", () => {
  test("Retry-After: seconds, a date, or nothing", () => {
    assert.equal(parseRetryAfter("2"), 2000);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter("soon"), undefined);
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
    assert.equal(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now), 0);
  });

  test("backoff: each delay in [cap/2, cap], doubling to the maximum", () => {
    let r = 0;
    const b = new Backoff(100, 1000, () => r);
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [50, 100, 200, 400, 500]);
    r = 1;
    b.reset();
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
  });

  test("client ids are distinct v4 UUIDs", () => {
    const ids = new Set(Array.from({ length: 1000 }, newClientId));
    assert.equal(ids.size, 1000);
  });
});
