/**
 * Exponential backoff with jitter: the n-th delay in a row lies in
 * [cap/2, cap] where cap = min(max, initial * 2^n), so clients that lost
 * the same server at the same moment do not come back all at once.
 */
export class Backoff {
  #attempt = 0;

  constructor(
    readonly initialMs: number,
    readonly maxMs: number,
    readonly random: () => number = Math.random,
  ) {}

  /** Delays handed out since the last `reset`. */
  get attempt(): number {
    return this.#attempt;
  }

  next(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt += 1;
    return Math.round(cap / 2 + (this.random() * cap) / 2);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
