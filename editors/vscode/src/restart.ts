// When to restart a server that died. Plain module, unit tested under node.

export interface RestartPolicyOptions {
  /** Crashes counted within this window (ms). */
  windowMs: number;
  /** More crashes than this within the window: give up. */
  maxCrashes: number;
  /** Delay before the first restart (ms); doubles with each crash in the window. */
  initialDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicyOptions = {
  windowMs: 3 * 60 * 1000,
  maxCrashes: 5,
  initialDelayMs: 500,
  maxDelayMs: 8000,
};

export class RestartPolicy {
  private crashes: number[] = [];

  constructor(private readonly options: RestartPolicyOptions = DEFAULT_RESTART_POLICY) {}

  /**
   * Records a crash at `now` and returns the delay before restarting, or undefined when the
   * server crashed too often within the window and should stay down.
   */
  onCrash(now: number): number | undefined {
    this.crashes = this.crashes.filter((t) => now - t < this.options.windowMs);
    this.crashes.push(now);
    const count = this.crashes.length;
    if (count > this.options.maxCrashes) {
      return undefined;
    }
    return Math.min(this.options.initialDelayMs * 2 ** (count - 1), this.options.maxDelayMs);
  }

  /** Forgets past crashes (after a manual restart). */
  reset(): void {
    this.crashes = [];
  }

  get recentCrashes(): number {
    return this.crashes.length;
  }
}
