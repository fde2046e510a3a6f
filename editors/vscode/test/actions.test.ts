import assert from 'node:assert/strict';
import { test } from 'node:test';
import { adapterPickItems, chooseAction, COMMAND_KINDS, isMarkdownUri, kindMatches, parseAdapterList } from '../src/actions';

test('each command asks for its own refactor.smalltalk kind', () => {
  assert.deepEqual(COMMAND_KINDS, {
    'smalltalk.explain': 'refactor.smalltalk.explain',
    'smalltalk.design': 'refactor.smalltalk.design',
    'smalltalk.implement': 'refactor.smalltalk.implement',
    'smalltalk.writeTests': 'refactor.smalltalk.tests',
  });
});

test('kinds match themselves and their sub-kinds only', () => {
  assert.ok(kindMatches('refactor.smalltalk.explain', 'refactor.smalltalk.explain'));
  assert.ok(kindMatches('refactor.smalltalk.explain.method', 'refactor.smalltalk.explain'));
  assert.ok(!kindMatches('refactor.smalltalk.explainer', 'refactor.smalltalk.explain'));
  assert.ok(!kindMatches(undefined, 'refactor.smalltalk.explain'));
});

test('chooseAction takes the preferred enabled action of the kind', () => {
  const actions = [
    { title: 'design', kind: 'refactor.smalltalk.design' },
    { title: 'explain (disabled)', kind: 'refactor.smalltalk.explain', disabled: { reason: 'no method' } },
    { title: 'explain class', kind: 'refactor.smalltalk.explain' },
    { title: 'explain method', kind: 'refactor.smalltalk.explain', isPreferred: true },
  ];
  assert.equal(chooseAction(actions, 'refactor.smalltalk.explain')?.title, 'explain method');
  assert.equal(chooseAction(actions.slice(0, 3), 'refactor.smalltalk.explain')?.title, 'explain class');
  assert.equal(chooseAction(actions, 'refactor.smalltalk.tests'), undefined);
  assert.equal(chooseAction(null, 'refactor.smalltalk.tests'), undefined);
});

test('chooseAction accepts VS Code kinds ({value})', () => {
  assert.equal(chooseAction([{ kind: { value: 'refactor.smalltalk.tests' } }], 'refactor.smalltalk.tests')?.kind !== undefined, true);
});

test('markdown documents are recognised by extension', () => {
  assert.ok(isMarkdownUri('file:///p/.smalltalk-lsp/explain/Account-deposit.md'));
  assert.ok(isMarkdownUri('file:///p/NOTES.MD?x=1'));
  assert.ok(!isMarkdownUri('file:///p/Account.st'));
  assert.ok(!isMarkdownUri('file:///p/md'));
});

test('adapter list: malformed entries dropped, active marked, broken last', () => {
  const adapters = parseAdapterList([
    { name: 'broken', path: '/a/broken.gguf', base_architecture: 'gemma3', loaded: false, active: false, scale: 1, error: 'architecture llama != gemma3' },
    { name: 'house-style', path: '/a/house.gguf', base_architecture: 'gemma3', loaded: true, active: true, scale: 0.8, error: null },
    { path: '/no/name' },
    'junk',
    { name: 'tests', path: '/a/tests.gguf', base_architecture: 'gemma3', loaded: false, active: false, scale: 1, error: null },
  ]);
  assert.deepEqual(adapters.map((a) => a.name), ['broken', 'house-style', 'tests']);
  const items = adapterPickItems(adapters);
  assert.deepEqual(items.map((i) => i.adapter), ['house-style', 'tests', 'broken']);
  assert.equal(items[0].label, '$(check) house-style');
  assert.equal(items[0].description, 'active · gemma3 · scale 0.8');
  assert.equal(items[2].detail, 'error: architecture llama != gemma3');
  assert.deepEqual(parseAdapterList({ not: 'a list' }), []);
});
