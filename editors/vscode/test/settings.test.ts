import assert from 'node:assert/strict';
import { test } from 'node:test';
import { didChangeConfigurationParams, toServerConfig, withTrust } from '../src/settings';

const getter = (values: Record<string, unknown>) => (key: string) => values[key];

test('all settings map to the server layout', () => {
  const { config, problems } = toServerConfig(
    getter({
      'models.coder': 'gemma3-270m',
      'models.reasoner': '/models/r1.gguf',
      'models.embeddings': 'all-MiniLM-L6-v2',
      'cpu.threads': 2,
      'cpu.batchSize': 256,
      'cpu.contextLength': 4096,
      'completion.maxGenerateMs': 800,
      'adapters.active': ['house-style', 'tests'],
    }),
  );
  assert.deepEqual(problems, []);
  assert.deepEqual(config, {
    models: { code_generation: 'gemma3-270m', reasoning: '/models/r1.gguf', embeddings: 'all-MiniLM-L6-v2' },
    cpu_settings: { threads: 2, batch_size: 256, context_length: 4096 },
    completion: { max_generate_ms: 800 },
    adapters: { active: ['house-style', 'tests'] },
  });
});

test('unset values and empty sections are left out', () => {
  const { config } = toServerConfig(getter({ 'models.coder': null, 'models.reasoner': '  ', 'cpu.threads': 4 }));
  assert.deepEqual(config, { cpu_settings: { threads: 4 } });
});

test('nothing set gives an empty object', () => {
  assert.deepEqual(toServerConfig(() => undefined).config, {});
});

test('an explicit empty adapter list is kept (no adapter active)', () => {
  assert.deepEqual(toServerConfig(getter({ 'adapters.active': [] })).config, { adapters: { active: [] } });
});

test('wrong types are reported by name and left out; the rest still applies', () => {
  const { config, problems } = toServerConfig(
    getter({ 'cpu.threads': 2.5, 'cpu.batchSize': '512', 'completion.maxGenerateMs': 0, 'models.coder': 7, 'adapters.active': 'x', 'cpu.contextLength': 2048 }),
  );
  assert.deepEqual(config, { cpu_settings: { context_length: 2048 } });
  assert.equal(problems.length, 5);
  for (const name of ['cpu.threads', 'cpu.batchSize', 'completion.maxGenerateMs', 'models.coder', 'adapters.active']) {
    assert.ok(problems.some((p) => p.startsWith(`smalltalk.${name}:`)), name);
  }
});

test('didChangeConfiguration params wrap the same layout in settings', () => {
  assert.deepEqual(didChangeConfigurationParams(getter({ 'completion.maxGenerateMs': 300 })), { settings: { completion: { max_generate_ms: 300 } } });
});

test('the trust state travels with the settings', () => {
  const { config } = toServerConfig(getter({ 'cpu.threads': 2 }));
  assert.deepEqual(withTrust(config, false), { cpu_settings: { threads: 2 }, trust: { workspace: false } });
  assert.deepEqual(withTrust(config, true).trust, { workspace: true });
  assert.deepEqual(config, { cpu_settings: { threads: 2 } });
});
