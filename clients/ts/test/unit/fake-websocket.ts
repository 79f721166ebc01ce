// A stand-in WebSocket for unit tests of the socket's logic; the
// integration tests use a real server.
import type { ClientFrame, ServerFrame } from "../../src/types.js";

type Listener = (event: unknown) => void;

export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  static last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error("no socket opened");
    return ws;
  }

  readyState = 0;
  sent: ClientFrame[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  #listeners = new Map<string, Listener[]>();

  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }

  addEventListener(type: string, listener: Listener): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener]);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data) as ClientFrame);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.#fire("close", { code: code ?? 1005, reason: reason ?? "" }), 0);
  }

  // What the server does:
  open(): void {
    this.readyState = 1;
    this.#fire("open", {});
  }

  receive(frame: ServerFrame): void {
    this.#fire("message", { data: JSON.stringify(frame) });
  }

  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.#fire("close", { code, reason });
  }

  acks(): string[] {
    return this.sent.flatMap((f) => (f.type === "ack" ? [f.message_id] : []));
  }

  #fire(type: string, event: unknown): void {
    for (const l of this.#listeners.get(type) ?? []) l(event);
  }
}

export async function waitFor(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
