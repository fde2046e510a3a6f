// The test editor: a temporary copy of the sample project, code-server with the packaged
// extension installed and its own user settings, and Chromium driven by playwright-core.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { clearTimeout, setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { waitFor } from './workbench.mjs';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const EXTENSION_DIR = path.resolve(E2E_DIR, '..');
export const REPO = path.resolve(EXTENSION_DIR, '..', '..');
export const VSIX = path.join(EXTENSION_DIR, 'smalltalk-lsp.vsix');
export const SERVER_BIN = path.join(REPO, '.venv', 'bin', 'smalltalk-lsp');
export const PYTHON = path.join(REPO, '.venv', 'bin', 'python');
const CODE_SERVER = path.join(E2E_DIR, 'node_modules', '.bin', 'code-server');
const NODE_BIN = path.join(E2E_DIR, 'node_modules', '.bin');
const CHROMIUM = process.env.SMALLTALK_E2E_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** User settings of the test editor: our server, and nothing that pops up by itself. */
export function userSettings(extra = {}) {
  return {
    ...extra,
    'smalltalk.server.command': [SERVER_BIN, 'serve'],
    // No cap on generation (the server's default stops it after 5 s): on a busy 2-core machine
    // a suggestion would then depend on the load; the tests check what appears, not how fast.
    'smalltalk.completion.maxGenerateMs': 100_000,
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
    'workbench.enableExperiments': false,
    'workbench.welcomePage.walkthroughs.openOnInstall': false,
    'security.workspace.trust.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'extensions.ignoreRecommendations': true,
    'editor.inlineSuggest.enabled': true,
    'editor.minimap.enabled': false,
    'editor.stickyScroll.enabled': false,
    'files.autoSave': 'off',
    'window.restoreWindows': 'none',
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function envWithNode24() {
  return { ...process.env, PATH: `${NODE_BIN}:${process.env.PATH ?? ''}` };
}

/**
 * Copies the sample project into a temp folder and returns the folder layout:
 * `{tmp, workspace, userData, extensions}`. The workspace is the Tonel copy (one format per
 * workspace, as the sample's notes recommend: the other formats hold the same classes).
 */
export function prepareWorkspace(extraSettings = {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'smalltalk-vscode-e2e-'));
  const sample = path.join(tmp, 'sample');
  fs.cpSync(path.join(REPO, 'tests', 'fixtures', 'sample'), sample, {
    recursive: true,
    // Caches a local run may have left in the fixture are not part of the project.
    filter: (src) => path.basename(src) !== '.smalltalk-lsp',
  });
  const workspace = path.join(sample, 'tonel');
  const userData = path.join(tmp, 'user-data');
  const extensions = path.join(tmp, 'extensions');
  fs.mkdirSync(extensions, { recursive: true });
  // code-server is a remote: machine-scoped settings (the server command) are read from the
  // Machine settings, the rest from the User settings; both get the same file.
  for (const scope of ['User', 'Machine']) {
    fs.mkdirSync(path.join(userData, scope), { recursive: true });
    fs.writeFileSync(path.join(userData, scope, 'settings.json'), JSON.stringify(userSettings(extraSettings), null, 2));
  }
  return { tmp, workspace, userData, extensions };
}

/** `code-server --install-extension` of the packaged .vsix into the temp extensions folder. */
export function installExtension(dirs, vsix = VSIX) {
  const out = execFileSync(
    CODE_SERVER,
    [
      '--config', path.join(dirs.tmp, 'code-server.yaml'),
      '--user-data-dir', dirs.userData,
      '--extensions-dir', dirs.extensions,
      '--install-extension', vsix,
    ],
    { env: envWithNode24(), encoding: 'utf8', timeout: 120_000 },
  );
  if (!/successfully installed/i.test(out)) {
    throw new Error(`installing ${vsix} failed:\n${out}`);
  }
}

export class CodeServer {
  constructor(proc, port, logFile) {
    this.proc = proc;
    this.port = port;
    this.logFile = logFile;
  }

  /** `logLevel: 'trace'` also records the LSP messages when `smalltalk.trace.server` is on. */
  static async start(dirs, { logLevel } = {}) {
    const port = await freePort();
    const logFile = path.join(dirs.tmp, 'code-server.log');
    const log = fs.openSync(logFile, 'a');
    const proc = spawn(
      CODE_SERVER,
      [
        '--auth', 'none',
        '--bind-addr', `127.0.0.1:${port}`,
        '--disable-telemetry',
        '--disable-update-check',
        '--disable-workspace-trust',
        '--disable-getting-started-override',
        '--ignore-last-opened',
        ...(logLevel ? ['--log', logLevel] : []),
        // Its own config file, so the user's ~/.config/code-server is neither read nor written.
        '--config', path.join(dirs.tmp, 'code-server.yaml'),
        '--user-data-dir', dirs.userData,
        '--extensions-dir', dirs.extensions,
        dirs.workspace,
      ],
      { env: envWithNode24(), stdio: ['ignore', log, log], detached: true },
    );
    fs.closeSync(log);
    const server = new CodeServer(proc, port, logFile);
    await waitFor(`code-server on port ${port} (log: ${logFile})`, async () => {
      if (proc.exitCode !== null) {
        throw new Error(`code-server exited with ${proc.exitCode}: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
      }
      const res = await globalThis.fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
      return res?.ok;
    }, 60_000);
    return server;
  }

  url(folder) {
    return `http://127.0.0.1:${this.port}/?folder=${encodeURIComponent(folder)}`;
  }

  /** Stops code-server and everything it started (its process group: extension host, server). */
  async stop() {
    if (this.proc.exitCode !== null) {
      return;
    }
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    try {
      process.kill(-this.proc.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** Pids of the language servers this code-server started (its descendants running `serve`). */
  serverPids() {
    const parents = new Map();
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) {
        continue;
      }
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
        // Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        parents.set(Number(entry), ppid);
      } catch {
        // a process that ended while we looked
      }
    }
    const isOurs = (pid) => {
      for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) {
        if (p === this.proc.pid) {
          return true;
        }
      }
      return false;
    };
    const pids = [];
    for (const pid of parents.keys()) {
      if (!isOurs(pid)) {
        continue;
      }
      try {
        const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (cmd.some((part) => part.endsWith('smalltalk-lsp')) && cmd.includes('serve')) {
          pids.push(pid);
        }
      } catch {
        // gone
      }
    }
    return pids;
  }
}

export async function launchBrowser() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  return { browser, context, page };
}

/** The newest log file of the extension's output channel ("Smalltalk LSP"), or undefined. */
export function extensionLogFile(userData) {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(p);
      } else if (/Smalltalk LSP\.log$/.test(entry.name)) {
        found.push(p);
      }
    }
  };
  try {
    walk(path.join(userData, 'logs'));
  } catch {
    return undefined;
  }
  return found.sort((a, b) => fs.statSync(a).mtimeMs - fs.statSync(b).mtimeMs).pop();
}

/** `smalltalk-lsp symbols FILE --json`: the parse of a saved file, as the server sees it. */
export function parseFile(file) {
  const out = execFileSync(SERVER_BIN, ['symbols', file, '--json'], { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out);
}
