import type { FieldError, Problem } from "./types.js";

/**
 * An answer other than 2xx, or no answer at all (`status` 0: the network
 * failed or the server could not be reached).
 */
export class ParleyError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The problem+json body, when the server sent one. */
  readonly problem: Problem | undefined;
  /** From `Retry-After` (429 and 503): how long to wait before trying again. */
  readonly retryAfterMs: number | undefined;

  constructor(
    status: number,
    message: string,
    options: { problem?: Problem; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ParleyError";
    this.status = status;
    this.problem = options.problem;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The problem's `type`, e.g. `urn:parley:problem:conflict`. */
  get type(): string | undefined {
    return this.problem?.type;
  }

  /** Validation failures (422): which field, and what is wrong with it. */
  get fieldErrors(): FieldError[] {
    return this.problem?.errors ?? [];
  }

  /** True for answers worth repeating later: 429, 503, or no answer. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 503;
  }
}

/** A server `error` frame on the socket (the socket stays open). */
export class ParleySocketError extends Error {
  constructor(detail: string) {
    super(detail);
    this.name = "ParleySocketError";
  }
}

/**
 * `Retry-After` in milliseconds: delta-seconds or an HTTP date;
 * `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
