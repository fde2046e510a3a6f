// Keeps the server's log from showing twice in the output channel. Plain module, unit tested
// under node.
//
// The server writes each log record to stderr and also sends it as `window/logMessage`;
// vscode-languageclient shows both. Stderr lines are held back briefly here: those that a
// message also brought (the record's text, without the timestamp stderr puts in front) are
// left out, all others (a crash's traceback, native library output, a record whose message
// never came) are shown in their order once their hold time is over. Nothing is lost.

/** The timestamp the server's stderr handler puts before a record (`%(asctime)s `). */
const STDERR_STAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?=(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) )/;

interface Held {
  line: string;
  key: string;
  at: number;
}

export interface DedupOptions {
  /** How long a stderr line waits for its message (ms). */
  holdMs: number;
  now: () => number;
  /** Runs `fn` after `ms`; the owner releases held lines with it. */
  schedule: (fn: () => void, ms: number) => void;
}

const DEFAULTS: DedupOptions = {
  holdMs: 1500,
  now: () => Date.now(),
  schedule: (fn, ms) => void setTimeout(fn, ms),
};

export class LogDedup {
  private readonly options: DedupOptions;
  private partial = '';
  private held: Held[] = [];
  /** Lines messages brought that stderr has not matched yet. */
  private fromMessages: Held[] = [];
  private scheduled = false;

  constructor(
    private readonly show: (line: string) => void,
    options: Partial<DedupOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** A message the client showed (`window/logMessage` text, possibly several lines). */
  message(text: string): void {
    const at = this.options.now();
    for (const line of text.split(/\r?\n/)) {
      const i = this.held.findIndex((h) => h.key === line);
      if (i >= 0) {
        this.held.splice(i, 1);
      } else {
        this.fromMessages.push({ line, key: line, at });
      }
    }
    this.release();
  }

  /** A chunk of the server's stderr. */
  stderr(chunk: string): void {
    const lines = (this.partial + chunk).split(/\r?\n/);
    this.partial = lines.pop() ?? '';
    const at = this.options.now();
    for (const line of lines) {
      const key = line.replace(STDERR_STAMP, '');
      const i = this.fromMessages.findIndex((m) => m.key === key);
      if (i >= 0) {
        this.fromMessages.splice(i, 1);
      } else {
        this.held.push({ line, key, at });
      }
    }
    this.release();
  }

  /** The stream ended: show everything still held. */
  flush(): void {
    if (this.partial !== '') {
      this.held.push({ line: this.partial, key: '', at: 0 });
      this.partial = '';
    }
    for (const h of this.held) {
      this.show(h.line);
    }
    this.held = [];
    this.fromMessages = [];
  }

  /** Shows the held lines whose time is over (in order), forgets old message lines. */
  release(): void {
    const now = this.options.now();
    const due = (h: Held) => now - h.at >= this.options.holdMs;
    while (this.held.length > 0 && due(this.held[0])) {
      this.show(this.held.shift()!.line);
    }
    // A message whose stderr copy never came (e.g. stderr closed) must not match a later line.
    this.fromMessages = this.fromMessages.filter((m) => now - m.at < 10 * this.options.holdMs);
    if (this.held.length > 0 && !this.scheduled) {
      this.scheduled = true;
      const wait = Math.max(0, this.held[0].at + this.options.holdMs - now);
      this.options.schedule(() => {
        this.scheduled = false;
        this.release();
      }, wait);
    }
  }
}
