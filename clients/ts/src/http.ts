import { Backoff } from "./backoff.js";
import { ParleyError, parseRetryAfter } from "./errors.js";
import type { Problem } from "./types.js";

export type AuthMode = "cookie" | "token";

/** When and how long requests are retried. */
export interface RetryOptions {
  /** Tries in all, the first included (default 5). */
  maxAttempts?: number;
  /**
   * The longest wait before a retry (default 30 s). A `Retry-After` longer
   * than this is not waited out: the call fails with that `retryAfterMs`.
   */
  maxDelayMs?: number;
  /** Waits without `Retry-After` start here and double (default 250 ms). */
  initialDelayMs?: number;
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** Retry on 429, 503 and network failures (only for calls safe to repeat). */
  retry?: boolean;
  signal?: AbortSignal | undefined;
}

export interface HttpSettings {
  baseUrl: string;
  auth: AuthMode;
  token: () => string | undefined;
  fetch: typeof fetch;
  retry: Required<RetryOptions>;
  random: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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

/** JSON over HTTP with Parley's errors, authentication and retries. */
export class Http {
  constructor(readonly settings: HttpSettings) {}

  url(path: string, query?: RequestOptions["query"]): string {
    const u = new URL(path, this.settings.baseUrl);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined) u.searchParams.set(k, String(v));
    }
    return u.toString();
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const { retry } = this.settings;
    const attempts = opts.retry ? Math.max(1, retry.maxAttempts) : 1;
    const backoff = new Backoff(retry.initialDelayMs, retry.maxDelayMs, this.settings.random);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(method, path, opts);
      } catch (e) {
        if (!(e instanceof ParleyError) || !e.retryable || attempt >= attempts) throw e;
        const wait = e.retryAfterMs ?? backoff.next();
        if (wait > retry.maxDelayMs) throw e;
        await this.settings.sleep(wait, opts.signal);
      }
    }
  }

  private async once<T>(method: string, path: string, opts: RequestOptions): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    const token = this.settings.token();
    if (this.settings.auth === "token" && token) headers.authorization = `Bearer ${token}`;
    let body: string | null = null;
    if (opts.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await this.settings.fetch(this.url(path, opts.query), {
        method,
        headers,
        body,
        credentials: this.settings.auth === "cookie" ? "include" : "omit",
        signal: opts.signal ?? null,
      });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw new ParleyError(0, `cannot reach Parley: ${String(e)}`, { cause: e });
    }
    const text = await res.text().catch(() => "");
    if (res.ok) return (text ? JSON.parse(text) : undefined) as T;
    const problem = parseProblem(text);
    const message = problem ? [problem.title, problem.detail].filter(Boolean).join(": ") : `HTTP ${res.status}`;
    const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
    throw new ParleyError(res.status, message, {
      ...(problem ? { problem } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
}

function parseProblem(text: string): Problem | undefined {
  try {
    const v = JSON.parse(text) as Partial<Problem>;
    if (v && typeof v === "object" && typeof v.status === "number" && typeof v.title === "string") {
      return v as Problem;
    }
  } catch {
    // not JSON: the status alone describes it
  }
  return undefined;
}
