// Starts a real `parley dev` (the binary cargo built) for the integration
// and browser tests, on a loopback port and a fresh data dir.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

/** The binary under test: `PARLEY_BIN`, else the workspace's debug build. */
export function parleyBinary(): string {
  const bin = process.env.PARLEY_BIN ?? join(REPO, "target", "debug", "parley");
  if (!existsSync(bin)) {
    throw new Error(`no parley binary at ${bin}: run \`cargo build --bin parley\` first (or set PARLEY_BIN)`);
  }
  return bin;
}

/** Where tests put what they produce (screenshots): target/web-test. */
export const OUTPUT_DIR = join(REPO, "target", "web-test");

/** Tests register and send far faster than people: rate limits off. */
const NO_LIMITS = [
  "--send-limit-per-user=off",
  "--register-limit-per-address=off",
  "--login-limit-per-address=off",
  "--login-limit-per-username=off",
  "--frame-limit-per-user=off",
];

export class Parley {
  #child: ChildProcess | undefined;
  #output = "";
  private constructor(
    readonly dataDir: string,
    readonly extra: string[],
    public url = "",
  ) {}

  static async start(extra: string[] = []): Promise<Parley> {
    const p = new Parley(mkdtempSync(join(tmpdir(), "parley-web-test-")), extra);
    await p.#spawn("127.0.0.1:0");
    return p;
  }

  get host(): string {
    return new URL(this.url).host;
  }

  /** Everything the process printed, for failure messages. */
  get output(): string {
    return this.#output;
  }

  async #spawn(listen: string): Promise<void> {
    const child = spawn(
      parleyBinary(),
      ["dev", "--listen", listen, "--data-dir", this.dataDir, ...NO_LIMITS, ...this.extra],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } },
    );
    this.#child = child;
    child.stderr?.on("data", (d: Buffer) => {
      this.#output += d.toString();
    });
    this.url = await new Promise<string>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`parley did not start:\n${out}${this.#output}`)), 30_000);
      child.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /parley listening on (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`parley exited (${code}) before listening:\n${out}${this.#output}`));
      });
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await fetch(`${this.url}/readyz`)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`parley never became ready:\n${this.#output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, and wait for the process to exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }

  /** Stops and starts again on the same address and data dir. */
  async restart(): Promise<void> {
    const host = this.host;
    await this.stop();
    await this.#spawn(host);
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy on loopback in front of `target` whose connections can be
 * cut at any moment, as a flaky network would.
 */
export class CuttingProxy {
  #server: net.Server;
  #sockets = new Set<net.Socket>();
  cuts = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(target: string): Promise<CuttingProxy> {
    const [host, port] = [new URL(target).hostname, Number(new URL(target).port)];
    const server = net.createServer();
    const proxy = new CuttingProxy(server);
    server.on("connection", (client) => {
      const upstream = net.connect(port, host);
      for (const s of [client, upstream]) {
        proxy.#sockets.add(s);
        s.on("close", () => proxy.#sockets.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return proxy;
  }

  get url(): string {
    const a = this.#server.address() as net.AddressInfo;
    return `http://127.0.0.1:${a.port}`;
  }

  /** Drops every connection through the proxy at once. */
  cut(): void {
    this.cuts++;
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.#server.close(r));
  }
}

export async function eventually(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
