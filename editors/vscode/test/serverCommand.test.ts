import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeServerCommand, expandVariables, findOnPath, resolveServerCommand, ResolveInput, venvExecutable } from '../src/serverCommand';

function input(overrides: Partial<ResolveInput> & { executables?: string[] } = {}): ResolveInput {
  const executables = new Set(overrides.executables ?? []);
  return {
    command: null,
    python: null,
    workspaceFolders: ['/home/u/project'],
    extensionPath: '/home/u/smalltalk-lsp/editors/vscode',
    env: { PATH: '/usr/local/bin:/usr/bin', HOME: '/home/u' },
    platform: 'linux',
    isExecutable: (file) => executables.has(file),
    trusted: true,
    ...overrides,
  };
}

test('the command setting wins over everything and is used as given', () => {
  const cmd = resolveServerCommand(
    input({ command: ['/opt/st/bin/smalltalk-lsp', 'serve', '--log', 'debug'], python: '/usr/bin/python3', executables: ['/home/u/project/.venv/bin/smalltalk-lsp'] }),
  );
  assert.deepEqual(cmd, { command: '/opt/st/bin/smalltalk-lsp', args: ['serve', '--log', 'debug'], source: 'setting:command' });
});

test('the command setting expands ${workspaceFolder} and ~', () => {
  const cmd = resolveServerCommand(input({ command: ['${workspaceFolder}/run.sh', '~/cfg.toml'] }));
  assert.equal(cmd.command, '/home/u/project/run.sh');
  assert.deepEqual(cmd.args, ['/home/u/cfg.toml']);
});

test('an empty command setting falls through to python', () => {
  const cmd = resolveServerCommand(input({ command: [], python: '/usr/bin/python3.11' }));
  assert.deepEqual(cmd, { command: '/usr/bin/python3.11', args: ['-m', 'server', 'serve'], source: 'setting:python' });
});

test('without settings the workspace .venv is used', () => {
  const cmd = resolveServerCommand(
    input({ executables: ['/home/u/project/.venv/bin/smalltalk-lsp', '/home/u/smalltalk-lsp/.venv/bin/smalltalk-lsp', '/usr/bin/smalltalk-lsp'] }),
  );
  assert.deepEqual(cmd, { command: '/home/u/project/.venv/bin/smalltalk-lsp', args: ['serve'], source: 'workspace-venv' });
});

test('the second workspace folder is searched when the first has no .venv', () => {
  const cmd = resolveServerCommand(
    input({ workspaceFolders: ['/a', '/b'], executables: ['/b/.venv/bin/smalltalk-lsp'] }),
  );
  assert.equal(cmd.command, '/b/.venv/bin/smalltalk-lsp');
});

test('then the .venv of the checkout the extension runs from (../../.venv)', () => {
  const cmd = resolveServerCommand(input({ executables: ['/home/u/smalltalk-lsp/.venv/bin/smalltalk-lsp', '/usr/bin/smalltalk-lsp'] }));
  assert.deepEqual(cmd, { command: '/home/u/smalltalk-lsp/.venv/bin/smalltalk-lsp', args: ['serve'], source: 'checkout-venv' });
});

test('an installed extension (not in editors/vscode) does not look at ../../.venv', () => {
  const cmd = resolveServerCommand(
    input({
      extensionPath: '/home/u/.vscode/extensions/smalltalk-lsp.smalltalk-lsp-0.1.0',
      executables: ['/home/u/.vscode/.venv/bin/smalltalk-lsp'],
    }),
  );
  assert.deepEqual(cmd, { command: 'smalltalk-lsp', args: ['serve'], source: 'path' });
});

test('then smalltalk-lsp on PATH, found in PATH order', () => {
  const cmd = resolveServerCommand(input({ executables: ['/usr/bin/smalltalk-lsp'] }));
  assert.deepEqual(cmd, { command: '/usr/bin/smalltalk-lsp', args: ['serve'], source: 'path' });
});

test('nothing found: the bare name, so that spawning reports it', () => {
  const cmd = resolveServerCommand(input({ workspaceFolders: [] }));
  assert.deepEqual(cmd, { command: 'smalltalk-lsp', args: ['serve'], source: 'path' });
});

test('a .venv file that is not executable is skipped', () => {
  // isExecutable says no for the workspace file: the PATH one is taken.
  const cmd = resolveServerCommand(input({ executables: ['/usr/local/bin/smalltalk-lsp'] }));
  assert.equal(cmd.command, '/usr/local/bin/smalltalk-lsp');
});

test('Windows uses .venv\\Scripts\\smalltalk-lsp.exe', () => {
  assert.equal(venvExecutable('C:\\p', 'win32'), 'C:\\p\\.venv\\Scripts\\smalltalk-lsp.exe');
  const found = findOnPath('smalltalk-lsp', {
    env: { PATH: 'C:\\a;C:\\b' },
    platform: 'win32',
    isExecutable: (f) => f === 'C:\\b\\smalltalk-lsp.exe',
  });
  assert.equal(found, 'C:\\b\\smalltalk-lsp.exe');
});

test('expandVariables leaves other text alone', () => {
  assert.equal(expandVariables('/x/~y/${other}', { workspaceFolders: ['/w'], env: { HOME: '/h' } }), '/x/~y/${other}');
});

test('describeServerCommand quotes arguments with spaces', () => {
  assert.equal(
    describeServerCommand({ command: '/my dir/smalltalk-lsp', args: ['serve'], source: 'path' }),
    '"/my dir/smalltalk-lsp" serve (from path)',
  );
});

test('an untrusted workspace never runs its own .venv', () => {
  const cmd = resolveServerCommand(
    input({ trusted: false, executables: ['/home/u/project/.venv/bin/smalltalk-lsp', '/usr/bin/smalltalk-lsp'] }),
  );
  assert.deepEqual(cmd, { command: '/usr/bin/smalltalk-lsp', args: ['serve'], source: 'path' });
  const unsaid = resolveServerCommand({ ...input({ executables: ['/home/u/project/.venv/bin/smalltalk-lsp'] }), trusted: undefined });
  assert.equal(unsaid.source, 'path');
});
