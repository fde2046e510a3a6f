import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogDedup } from '../src/logDedup';

/** A deduper on a fake clock; `shown` collects what the output channel would show. */
function setup(holdMs = 1000) {
  let now = 0;
  const timers: { at: number; fn: () => void }[] = [];
  const shown: string[] = [];
  const dedup = new LogDedup((line) => shown.push(line), {
    holdMs,
    now: () => now,
    schedule: (fn, ms) => void timers.push({ at: now + ms, fn }),
  });
  const advance = (ms: number) => {
    now += ms;
    const due = timers.filter((t) => t.at <= now);
    timers.splice(0, timers.length, ...timers.filter((t) => t.at > now));
    for (const t of due) {
      t.fn();
    }
  };
  return { dedup, shown, advance };
}

const STAMP = '2026-11-28 18:32:59,513 ';

test('a record on stderr and as a message shows once (stderr first)', () => {
  const { dedup, shown, advance } = setup();
  dedup.stderr(`${STAMP}INFO server.engine.llama_model: loading gemma\n`);
  dedup.message('INFO server.engine.llama_model: loading gemma');
  advance(5000);
  assert.deepEqual(shown, []);
});

test('a record on stderr and as a message shows once (message first)', () => {
  const { dedup, shown, advance } = setup();
  dedup.message('INFO server.lsp: workspace roots: /w');
  dedup.stderr(`${STAMP}INFO server.lsp: workspace roots: /w\n`);
  advance(5000);
  assert.deepEqual(shown, []);
});

test('a multi-line record (a traceback) is matched line by line', () => {
  const { dedup, shown, advance } = setup();
  const record = 'ERROR adapters.manager: adapter sync failed\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: bad';
  dedup.stderr(`${STAMP}${record}\n`);
  dedup.message(record);
  advance(5000);
  assert.deepEqual(shown, []);
});

test('other stderr output is shown in order after the hold time, split chunks joined', () => {
  const { dedup, shown, advance } = setup();
  dedup.stderr('Fatal Python error: Segm');
  dedup.stderr(`entation fault\n${STAMP}INFO server.lsp: a\nThread 0x1 (most recent call first):\n`);
  dedup.message('INFO server.lsp: a');
  advance(500);
  assert.deepEqual(shown, []);
  advance(600);
  assert.deepEqual(shown, ['Fatal Python error: Segmentation fault', 'Thread 0x1 (most recent call first):']);
});

test('a record whose message never comes is shown, timestamp and all', () => {
  const { dedup, shown, advance } = setup();
  dedup.stderr(`${STAMP}ERROR server.lsp: dying\n`);
  advance(1000);
  assert.deepEqual(shown, [`${STAMP}ERROR server.lsp: dying`]);
});

test('flush shows what is held, including a last line without a line end', () => {
  const { dedup, shown } = setup();
  dedup.stderr('first\nlast without end');
  dedup.flush();
  assert.deepEqual(shown, ['first', 'last without end']);
});

test('an old message line does not swallow a later identical stderr line', () => {
  const { dedup, shown, advance } = setup(100);
  dedup.message('INFO server.lsp: same');
  advance(5000);
  dedup.release();
  dedup.stderr(`${STAMP}INFO server.lsp: same\n`);
  advance(100);
  assert.deepEqual(shown, [`${STAMP}INFO server.lsp: same`]);
});
