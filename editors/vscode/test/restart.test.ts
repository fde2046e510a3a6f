import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RestartPolicy } from '../src/restart';

const options = { windowMs: 60_000, maxCrashes: 3, initialDelayMs: 500, maxDelayMs: 1500 };

test('delays double and are capped', () => {
  const p = new RestartPolicy(options);
  assert.equal(p.onCrash(0), 500);
  assert.equal(p.onCrash(1000), 1000);
  assert.equal(p.onCrash(2000), 1500);
});

test('too many crashes within the window: give up', () => {
  const p = new RestartPolicy(options);
  p.onCrash(0);
  p.onCrash(1);
  p.onCrash(2);
  assert.equal(p.onCrash(3), undefined);
});

test('crashes older than the window are forgotten', () => {
  const p = new RestartPolicy(options);
  p.onCrash(0);
  p.onCrash(1);
  p.onCrash(2);
  assert.equal(p.onCrash(70_000), 500);
  assert.equal(p.recentCrashes, 1);
});

test('reset forgets all crashes', () => {
  const p = new RestartPolicy(options);
  p.onCrash(0);
  p.onCrash(1);
  p.reset();
  assert.equal(p.onCrash(2), 500);
});
