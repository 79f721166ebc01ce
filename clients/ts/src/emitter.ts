type Listener<T> = (value: T) => unknown;

/**
 * A small typed event emitter. `emitAsync` awaits each listener in turn,
 * so the socket knows when the app has finished with a frame.
 */
export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; the returned function removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  protected listenerCount(event: keyof Events): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /** Calls every listener; resolves once each (and its promise) is done. */
  protected async emitAsync<K extends keyof Events>(event: K, value: Events[K]): Promise<void> {
    for (const l of [...(this.#listeners.get(event) ?? [])]) {
      await (l as Listener<Events[K]>)(value);
    }
  }

  /** Calls every listener now; a listener that throws is reported to `onError`. */
  protected emitNow<K extends keyof Events>(event: K, value: Events[K], onError: (e: unknown) => void): void {
    for (const l of [...(this.#listeners.get(event) ?? [])]) {
      try {
        const r = (l as Listener<Events[K]>)(value);
        if (r instanceof Promise) r.catch(onError);
      } catch (e) {
        onError(e);
      }
    }
  }
}
