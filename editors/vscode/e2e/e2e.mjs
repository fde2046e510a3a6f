// End-to-end tests of the VS Code extension in a real VS Code: code-server in Chromium, the
// packaged .vsix installed, the Tonel sample project open, the real server with its embedded
// default models. Run through run.sh (which sets everything up):
//
//   node e2e.mjs [--screenshots] [--only 1,3] [--keep] [--trace]
//
// --screenshots  saves a PNG of each step into screenshots/ (failures are always saved)
// --only         runs only the given steps (numbers as in STEPS below)
// --keep         keeps the temp folder (workspace copy, code-server log, extension log)
// --trace        logs the LSP messages into the extension's log (smalltalk.trace.server)
// Prints one line per step and "N passed, N failed"; exits 1 when a step failed.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  CodeServer,
  E2E_DIR,
  extensionLogFile,
  installExtension,
  launchBrowser,
  parseFile,
  prepareWorkspace,
  PYTHON,
  REPO,
} from './lib/editor.mjs';
import { screenText, waitFor, Workbench } from './lib/workbench.mjs';

const SHOTS = path.join(E2E_DIR, 'screenshots');
// What the tests add to the sample (fixture.json): the stub method each completion step works
// in (one each, so no step sees another's edit; {file, class, pattern, body}) and the adapter
// of step 4. tests/test_vscode_adapter_step.py checks step 4's part against the server alone.
const FIXTURE = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'fixture.json'), 'utf8'));
const STUBS = FIXTURE.stubs;
const LICENCE_PATH = path.join('StreamingRights-Core', 'SRLicence.class.st');
const LICENCE = path.basename(LICENCE_PATH);
const ADAPTER = FIXTURE.adapter.name;
// Generous: the first suggestion of a cold model and an explanation from the reasoner on a
// shared 2-core machine.
const MODELS_READY_MS = 180_000;
const SUGGESTION_MS = 120_000;
const EXPLANATION_MS = 420_000;

const args = process.argv.slice(2);
const options = {
  screenshots: args.includes('--screenshots'),
  keep: args.includes('--keep'),
  trace: args.includes('--trace'),
  only: (() => {
    const i = args.findIndex((a) => a === '--only' || a.startsWith('--only='));
    if (i < 0) {
      return undefined;
    }
    const value = args[i].includes('=') ? args[i].split('=')[1] : args[i + 1];
    return new Set(value.split(',').map(Number));
  })(),
};

function log(line) {
  process.stdout.write(`${line}\n`);
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Appends the stub methods to the Tonel copies of their classes. Step 4's is in a file of its
 * own: its `^` stays out of the other steps' prompts, and what they accept out of its prompt
 * (the coder without fill-in-the-middle sees the text before the cursor).
 */
function addStubs(workspace) {
  for (const stub of Object.values(STUBS)) {
    const file = path.join(workspace, stub.file);
    const text = fs.readFileSync(file, 'utf8').replace(/\s*$/, '\n');
    const method = `${stub.class} >> ${stub.pattern} [\n\n\t${stub.body}\n]\n`;
    fs.writeFileSync(file, `${text}\n{ #category : #testing }\n${method}`);
  }
}

/**
 * Where `needle` is in a workspace file, `offset` characters into it: line and column count
 * from 1 and the column is visual (a tab stops at multiples of 4), as VS Code's Go to Line and
 * status bar count.
 */
function locate(workspace, relPath, needle, offset = 0) {
  const lines = fs.readFileSync(path.join(workspace, relPath), 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const at = lines[i].indexOf(needle);
    if (at >= 0) {
      let column = 0;
      for (const ch of lines[i].slice(0, at + offset)) {
        column = ch === '\t' ? (Math.floor(column / 4) + 1) * 4 : column + 1;
      }
      return { line: i + 1, column: column + 1 };
    }
  }
  throw new Error(`"${needle}" not found in ${relPath}`);
}

/** The body line of a stub (after the pattern and a blank line), cursor after what it holds. */
function stubBody(workspace, stub) {
  const at = locate(workspace, stub.file, `${stub.class} >> ${stub.pattern} [`);
  return { line: at.line + 2, column: 5 + stub.body.length };
}

/**
 * The fixture's seeded random LoRA for the coder: at this strength it still writes code, only
 * other code (stronger ones write punctuation the filters drop: no suggestion at all).
 */
function writeAdapter(workspace) {
  const target = path.join(workspace, '.smalltalk-lsp', 'adapters', `${ADAPTER}.gguf`);
  const { rank, seed, strength } = FIXTURE.adapter;
  const script = [
    'import sys',
    'from adapters import testing',
    'from server.engine.embedded import resolve_model_path',
    'rank, seed, strength = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])',
    'testing.write_lora(sys.argv[1], resolve_model_path(sys.argv[5]), rank=rank, seed=seed, strength=strength)',
  ].join('\n');
  // The adapter is for the coder the run uses: the default one (fixture.json names it).
  const args = ['-c', script, target, String(rank), String(seed), String(strength), FIXTURE.adapter.base];
  execFileSync(PYTHON, args, { cwd: REPO, stdio: 'inherit', timeout: 120_000 });
  return target;
}

function normalize(text) {
  return screenText(text).replace(/\s+/g, ' ').trim();
}

class Run {
  constructor(dirs, codeServer, page) {
    this.dirs = dirs;
    this.codeServer = codeServer;
    this.page = page;
    this.wb = new Workbench(page);
  }

  async shot(name, opts = {}) {
    if (!options.screenshots) {
      return;
    }
    await this.wb.screenshot(path.join(SHOTS, `${name}.png`), opts);
  }

  /** Screenshot of the editor area only (smaller, for the README); `rows` around the cursor. */
  async editorShot(name, rows) {
    const box = await this.page.locator('.part.editor').boundingBox();
    const cursor = rows ? await this.page.locator('.editor-group-container.active .monaco-editor .cursor').first().boundingBox() : null;
    if (box && cursor && rows) {
      const top = Math.max(box.y, cursor.y - rows.above * cursor.height);
      const bottom = Math.min(box.y + box.height, cursor.y + (rows.below + 1) * cursor.height);
      await this.shot(name, { clip: { x: box.x, y: top, width: box.width, height: bottom - top } });
      return;
    }
    await this.shot(name, box ? { clip: box } : {});
  }

  async status() {
    return this.wb.status();
  }

  /** Waits until the server runs and reports the coder model ready. */
  async modelsReady(timeoutMs = MODELS_READY_MS) {
    return waitFor('the status bar to report "coder: ready"', async () => {
      const s = await this.status();
      return /Server: running/.test(s.label) && /coder: ready/.test(s.label) ? s : undefined;
    }, timeoutMs, 500);
  }

  async fresh() {
    await this.wb.escape(3);
    // A step that failed half way may leave an edit; saving it keeps a dialog from blocking.
    await this.wb.command('File: Save All');
    await this.wb.command('View: Close All Editors');
    await waitFor('all editors closed', async () => (await this.wb.tabNames()).length === 0, 10_000);
  }

  /**
   * Waits until the retrieval index is built (its log line), or the server said it goes on
   * without one. Until then a prompt's project context depends on timing; once it is built
   * the same cursor gets the same prompt.
   */
  async retrievalReady(timeoutMs = MODELS_READY_MS) {
    return waitFor('the retrieval index', async () => {
      const file = extensionLogFile(this.dirs.userData);
      const text = file ? fs.readFileSync(file, 'utf8') : '';
      return /retrieval index: \d+ units|without similar-code search/.test(text);
    }, timeoutMs, 500);
  }

  /**
   * Asks for a suggestion at the end of a stub's body (Trigger Inline Suggestion, Alt+\ by
   * default) and answers the ghost text that appears; the document is not edited.
   */
  async suggestHere(stub) {
    const at = stubBody(this.dirs.workspace, stub);
    await this.wb.gotoLine(at.line, at.column);
    await this.wb.command('Trigger Inline Suggestion');
    return waitFor(`ghost text in ${stub.pattern}`, async () => {
      const ghost = await this.wb.ghostText();
      return ghost.trim() !== '' ? ghost : undefined;
    }, SUGGESTION_MS, 200);
  }

  /** Types `^` at the start of a stub body and answers the ghost text that appears. */
  async suggestAt(stub) {
    const at = stubBody(this.dirs.workspace, stub);
    await this.wb.gotoLine(at.line, at.column);
    await this.page.keyboard.type('^', { delay: 30 });
    return waitFor(`ghost text in ${stub.pattern}`, async () => {
      const ghost = await this.wb.ghostText();
      return ghost.trim() !== '' ? ghost : undefined;
    }, SUGGESTION_MS, 200);
  }
}

const STEPS = [
  {
    n: 1,
    name: 'ghost text from the coder in an empty method; Tab accepts it; the file still parses',
    async run(r) {
      await r.fresh();
      await r.wb.openFile(LICENCE);
      await r.modelsReady();
      // What step 1 accepts is in later prompts (as context): the same every run.
      await r.retrievalReady();
      const started = Date.now();
      const ghost = await r.suggestAt(STUBS.accept);
      log(`    suggestion after ${seconds(Date.now() - started)}: ${JSON.stringify(ghost)}`);
      await r.editorShot('suggestion', { above: 9, below: 4 });
      await r.page.keyboard.press('Tab');
      await waitFor('the ghost text to go after Tab', async () => (await r.wb.ghostText()) === '', 10_000);
      await r.page.keyboard.press('Control+S');
      // What the user sees: the server re-parses the buffer and its error marks go away.
      await waitFor('"No Problems" in the status bar', async () => {
        const label = await r.page.locator('#status\\.problems').getAttribute('aria-label');
        return /No Problems/i.test(label ?? '');
      }, 15_000);
      await r.shot('1-accepted');
      const file = path.join(r.dirs.workspace, LICENCE_PATH);
      const accepted = normalize(`^${ghost.split('\n')[0]}`);
      const saved = await waitFor(`"${accepted}" in the saved file`, async () => {
        const text = fs.readFileSync(file, 'utf8');
        return normalize(text).includes(accepted) ? text : undefined;
      }, 10_000);
      const parse = parseFile(file);
      const diagnostics = parse.diagnostics ?? [];
      if (diagnostics.length > 0) {
        throw new Error(`the file no longer parses: ${JSON.stringify(diagnostics)}\n${saved.slice(-400)}`);
      }
      const selector = STUBS.accept.pattern.split(' ')[0];
      if (!parse.methods.some((m) => m.selector === selector)) {
        throw new Error(`method ${selector} missing from the parse: ${parse.methods.map((m) => m.selector).join(' ')}`);
      }
    },
  },
  {
    n: 2,
    name: 'hover on a class name shows its comment; go to definition lands on the implementor',
    async run(r) {
      await r.fresh();
      const ws = r.dirs.workspace;
      const testFile = path.join('StreamingRights-Tests', 'SRStoreTest.class.st');
      const ref = locate(ws, testFile, 'licence := SRLicence', 'licence := SR'.length);
      await r.wb.openFile('SRStoreTest.class.st');
      await r.wb.gotoLine(ref.line, ref.column);
      const hover = await r.wb.showHover('a hover with the class comment',
        (text) => text.includes('I am a licence'));
      log(`    hover: ${JSON.stringify(normalize(hover).slice(0, 120))}`);
      await r.shot('2-hover');
      await r.wb.escape();

      const send = locate(ws, path.join('StreamingRights-Core', 'SRRight.class.st'), 'isActiveOn:', 3);
      const impl = locate(ws, LICENCE_PATH, 'SRLicence >> isActiveOn:');
      await r.wb.openFile('SRRight.class.st');
      await r.wb.gotoLine(send.line, send.column);
      await r.page.keyboard.press('F12');
      await waitFor(`the implementor ${LICENCE}:${impl.line}`, async () => {
        const pos = await r.wb.cursorPosition();
        return (await r.wb.activeTabName()) === LICENCE && pos?.line === impl.line;
      }, 30_000);
      await r.shot('2-definition');
    },
  },
  {
    n: 3,
    name: 'the light bulb offers Explain, Design, Implement, Write tests; Explain opens a Markdown preview',
    async run(r) {
      await r.fresh();
      // In the method comment: Design and Implement work from a comment (or a selection).
      const at = locate(r.dirs.workspace, LICENCE_PATH, '"Answer the fee spread over the days', 8);
      await r.wb.openFile(LICENCE);
      await r.modelsReady();
      await r.wb.gotoLine(at.line, at.column);
      await r.page.keyboard.press('Control+.');
      const wanted = [/^Explain/i, /^Design/i, /^Implement/i, /^Write .*tests/i];
      const labels = await waitFor('Explain, Design, Implement and Write tests in the code action list', async () => {
        const found = await r.wb.actionListLabels();
        return wanted.every((re) => found.some((l) => re.test(l))) ? found : undefined;
      }, 30_000).catch(async (error) => {
        const found = await r.wb.actionListLabels().catch(() => []);
        throw new Error(`${error.message}; the list shows: ${JSON.stringify(found)}`);
      });
      log(`    actions: ${labels.join(' | ')}`);
      await r.shot('3-lightbulb');
      const explain = r.page.locator('.action-widget .monaco-list-row', { hasText: /Explain/i }).first();
      await explain.click();
      const started = Date.now();
      const text = await waitFor('a Markdown preview with the explanation', async () => {
        const tabs = await r.wb.tabNames();
        if (!tabs.some((t) => /^Preview /.test(t))) {
          return undefined;
        }
        const body = await r.wb.markdownPreviewText();
        return /feePerDay/.test(body) && body.trim().length > 80 ? body : undefined;
      }, EXPLANATION_MS, 1_000);
      log(`    explanation after ${seconds(Date.now() - started)} (${text.length} chars): ${JSON.stringify(normalize(text).slice(0, 160))}`);
      await r.editorShot('explanation');
    },
  },
  {
    n: 4,
    name: 'the status bar shows models and adapters; activating an adapter from it changes the next suggestion',
    async run(r) {
      await r.fresh();
      await r.wb.openFile(path.basename(STUBS.adapter.file));
      const before = await r.modelsReady();
      if (!/Adapters: none/.test(before.label)) {
        throw new Error(`expected no active adapter at first: ${before.label}`);
      }
      // Nothing configured: the status names the embedded default models.
      if (!/coder: ready \(qwen2\.5-coder-0\.5b\)/.test(before.label) || !/reasoner: \w+ \(qwen2\.5-coder-1\.5b\)/.test(before.label)) {
        throw new Error(`expected the default models in the status: ${before.label}`);
      }
      log(`    status: ${JSON.stringify(before.text)} / ${before.label}`);
      await r.wb.statusItem().hover();
      await waitFor('the status tooltip', async () => /coder: ready/.test(await r.wb.hoverText()), 10_000);
      await r.page.waitForTimeout(500); // the tooltip fades in
      await r.shot('4-status');
      await r.page.mouse.move(600, 300);

      // The same prompt with and without the adapter: the project context complete, and the
      // document left as it is (its body already holds `^`).
      await r.retrievalReady();
      const plain = await r.suggestHere(STUBS.adapter);
      log(`    without adapter: ${JSON.stringify(plain)}`);
      await r.wb.escape(1);

      await r.wb.quickInput(() => r.wb.statusItem().click(), '', ADAPTER);
      const row = r.page.locator('.quick-input-list .monaco-list-row', { hasText: ADAPTER }).first();
      await row.waitFor({ timeout: 30_000 });
      await r.shot('4-adapters');
      await r.page.keyboard.press('Enter');
      const after = await waitFor(`[${ADAPTER}] in the status bar`, async () => {
        const s = await r.status();
        return s.text.includes(ADAPTER) ? s : undefined;
      }, 60_000);
      log(`    status: ${JSON.stringify(after.text)}`);

      const started = Date.now();
      const adapted = await r.suggestHere(STUBS.adapter);
      log(`    with ${ADAPTER} after ${seconds(Date.now() - started)}: ${JSON.stringify(adapted)}`);
      await r.shot('4-suggestion-with-adapter');
      if (normalize(adapted) === normalize(plain)) {
        throw new Error(`the suggestion did not change with ${ADAPTER}: ${JSON.stringify(adapted)}`);
      }
      await r.wb.escape(1);
    },
  },
  {
    n: 5,
    name: 'a server killed from outside is restarted and completions come back',
    async run(r) {
      await r.fresh();
      await r.wb.openFile(LICENCE);
      await r.modelsReady();
      const pids = r.codeServer.serverPids();
      if (pids.length !== 1) {
        throw new Error(`expected one server process, found ${JSON.stringify(pids)}`);
      }
      log(`    killing server pid ${pids[0]}`);
      process.kill(pids[0], 'SIGKILL');
      const restarted = await waitFor('a new server process', async () => {
        const now = r.codeServer.serverPids();
        return now.length === 1 && now[0] !== pids[0] ? now[0] : undefined;
      }, 60_000);
      log(`    new server pid ${restarted}`);
      await r.modelsReady();
      const ghost = await r.suggestAt(STUBS.restart);
      log(`    suggestion after the restart: ${JSON.stringify(ghost)}`);
      await r.shot('5-after-restart');
      await r.wb.escape(1);
    },
  },
];

function printLogTail(dirs, lines = 40) {
  const file = extensionLogFile(dirs.userData);
  if (!file) {
    log('    (no extension log found)');
    return;
  }
  const tail = fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  log(`    --- last ${tail.length} lines of ${file}`);
  for (const line of tail) {
    log(`    | ${line}`);
  }
}

async function main() {
  const t0 = Date.now();
  fs.mkdirSync(SHOTS, { recursive: true });
  const steps = STEPS.filter((s) => !options.only || options.only.has(s.n));
  const dirs = prepareWorkspace(options.trace ? { 'smalltalk.trace.server': 'verbose' } : {});
  addStubs(dirs.workspace);
  if (steps.some((s) => s.n === 4)) {
    writeAdapter(dirs.workspace);
  }
  installExtension(dirs);
  log(`workspace ${dirs.workspace}; extension installed (${seconds(Date.now() - t0)})`);

  let codeServer;
  let browser;
  let passed = 0;
  let failed = 0;
  try {
    codeServer = await CodeServer.start(dirs, { logLevel: options.trace ? 'trace' : undefined });
    const launched = await launchBrowser();
    browser = launched.browser;
    const run = new Run(dirs, codeServer, launched.page);
    await launched.page.goto(codeServer.url(dirs.workspace));
    await run.wb.ready();
    log(`workbench ready (${seconds(Date.now() - t0)})`);

    for (const step of steps) {
      const started = Date.now();
      try {
        await step.run(run);
        passed++;
        log(`ok   ${step.n} ${step.name} (${seconds(Date.now() - started)})`);
      } catch (error) {
        failed++;
        log(`FAIL ${step.n} ${step.name} (${seconds(Date.now() - started)})`);
        log(`    ${String(error?.stack ?? error).split('\n').slice(0, 6).join('\n    ')}`);
        const file = path.join(SHOTS, `step${step.n}-failure.png`);
        await run.wb.screenshot(file).then(() => log(`    screenshot: ${file}`), () => undefined);
        printLogTail(dirs);
      }
    }
  } finally {
    await browser?.close().catch(() => undefined);
    await codeServer?.stop();
    if (options.keep) {
      log(`kept ${dirs.tmp}`);
    } else {
      fs.rmSync(dirs.tmp, { recursive: true, force: true });
    }
  }
  log(`${passed} passed, ${failed} failed (${seconds(Date.now() - t0)})`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error) => {
  log(`e2e: ${error?.stack ?? error}`);
  process.exitCode = 1;
});
