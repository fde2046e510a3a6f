import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyProgress, applyStatusNotification, initialStatus, renderStatus, StatusState, withServerState } from '../src/status';

const running = (): StatusState => withServerState(initialStatus(), 'running');

test('starting server shows a spinner', () => {
  assert.equal(renderStatus(initialStatus()).text, '$(sync~spin) Smalltalk: starting');
});

test('models loading, then ready with the active adapters', () => {
  let s = applyStatusNotification(running(), { models: { coder: 'loading', reasoner: 'off' }, indexing: null, adapters: [] });
  assert.equal(renderStatus(s).text, '$(sync~spin) Smalltalk: loading coder');
  s = applyStatusNotification(s, { models: { coder: 'ready' }, adapters: ['house-style'] });
  const r = renderStatus(s);
  assert.equal(r.text, '$(check) Smalltalk [house-style]');
  assert.equal(r.severity, 'normal');
  assert.match(r.tooltip, /coder: ready/);
  assert.match(r.tooltip, /reasoner: off/);
  assert.match(r.tooltip, /Adapters: house-style/);
  assert.equal(r.label, 'Smalltalk LSP: Server: running; coder: ready; reasoner: off; Adapters: house-style');
});

test('the tooltip names the model each role runs', () => {
  const s = applyStatusNotification(running(), {
    models: { coder: 'ready', reasoner: 'loading' },
    names: { coder: 'qwen2.5-coder-0.5b', reasoner: 'qwen2.5-coder-1.5b' },
  });
  const r = renderStatus(s);
  assert.match(r.tooltip, /coder: ready \(qwen2\.5-coder-0\.5b\)/);
  assert.match(r.label, /reasoner: loading \(qwen2\.5-coder-1\.5b\)/);
  // A later notification without names keeps them; a role that is off shows no name.
  const off = applyStatusNotification(s, { models: { reasoner: 'off' }, names: { reasoner: 'off' } });
  assert.match(renderStatus(off).tooltip, /coder: ready \(qwen2\.5-coder-0\.5b\)\nreasoner: off\n/);
});

test('a failed model is an error and named', () => {
  const s = applyStatusNotification(running(), { models: { coder: 'ready', reasoner: 'failed' } });
  const r = renderStatus(s);
  assert.equal(r.text, '$(error) Smalltalk: reasoner failed');
  assert.equal(r.severity, 'error');
});

test('unknown model states and junk params are ignored', () => {
  const s = applyStatusNotification(running(), { models: { coder: 'exploded' } });
  assert.deepEqual(s.models, {});
  assert.equal(applyStatusNotification(s, null), s);
});

test('indexing from the notification', () => {
  const s = applyStatusNotification(running(), { models: { coder: 'ready' }, indexing: '12/40 files' });
  assert.equal(renderStatus(s).text, '$(sync~spin) Smalltalk: indexing');
  assert.match(renderStatus(s).tooltip, /Indexing: 12\/40 files/);
  assert.equal(renderStatus(applyStatusNotification(s, { indexing: null })).text, '$(check) Smalltalk');
});

test('$/progress about models: begin, report, end', () => {
  let s = applyProgress(running(), 'tok-1', { kind: 'begin', title: 'Loading model gemma3' });
  assert.equal(renderStatus(s).text, '$(sync~spin) Smalltalk: loading models');
  s = applyProgress(s, 'tok-1', { kind: 'report', message: 'mmap', percentage: 50 });
  assert.match(renderStatus(s).tooltip, /Loading model gemma3: mmap 50%/);
  s = applyProgress(s, 'tok-1', { kind: 'end' });
  assert.equal(renderStatus(s).text, '$(check) Smalltalk');
});

test('$/progress about indexing shows indexing; other titles are ignored', () => {
  let s = applyProgress(running(), 7, { kind: 'begin', title: 'Indexing workspace' });
  assert.equal(renderStatus(s).text, '$(sync~spin) Smalltalk: indexing');
  s = applyProgress(s, 8, { kind: 'begin', title: 'Formatting' });
  assert.deepEqual(Object.keys(s.progress), ['7']);
  s = applyProgress(s, 8, { kind: 'end' });
  s = applyProgress(s, 7, { kind: 'end' });
  assert.deepEqual(s.progress, {});
});

test('a stopped server is an error and forgets what the old process reported', () => {
  let s = applyStatusNotification(running(), { models: { coder: 'loading' } });
  s = applyProgress(s, 'x', { kind: 'begin', title: 'Loading model' });
  s = withServerState(s, 'stopped');
  assert.deepEqual(s.models, {});
  assert.deepEqual(s.progress, {});
  assert.equal(renderStatus(s).severity, 'error');
});

test('a suggestion in flight says the coder is thinking, with the prompt progress', () => {
  let s = applyStatusNotification(running(), { models: { coder: 'ready' } });
  s = applyStatusNotification(s, { completion: { state: 'thinking', uri: 'file:///a.st', done: 512, total: 1400 } });
  assert.equal(renderStatus(s).text, '$(loading~spin) Smalltalk: thinking 512/1400 tokens');
  s = applyStatusNotification(s, { completion: { state: 'writing' } });
  assert.equal(renderStatus(s).text, '$(loading~spin) Smalltalk: writing a suggestion');
  s = applyStatusNotification(s, {
    completion: { state: 'idle', last: { ms: 2300, prompt_tokens: 1400, reused_tokens: 1200, empty: false } },
  });
  const r = renderStatus(s);
  assert.equal(r.text, '$(check) Smalltalk');
  assert.match(r.tooltip, /Last suggestion: 2\.3 s, 1400 prompt tokens \(1200 reused\)/);
});

test('a suggestion waiting for the model says so', () => {
  const s = applyStatusNotification(running(), { models: { coder: 'loading' }, completion: { state: 'waiting-for-model' } });
  assert.equal(renderStatus(s).text, '$(loading~spin) Smalltalk: suggestion waits for the coder model to load');
});
