// Driving the VS Code workbench (code-server in Chromium) like a user: keyboard first, the
// DOM only to read what is on screen. Every wait has a deadline and says what it waited for.

import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `fn` until it answers something truthy; throws `what` after `timeoutMs`. */
export async function waitFor(what, fn, timeoutMs = 30_000, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await fn();
      if (value) {
        return value;
      }
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${lastError.message ?? lastError})` : '';
      throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

/** The text VS Code renders, with its non-breaking spaces turned back into spaces. */
export function screenText(text) {
  return (text ?? '').replace(/\u00a0/g, ' ');
}

export class Workbench {
  constructor(page) {
    this.page = page;
  }

  async ready(timeoutMs = 60_000) {
    await this.page.locator('.monaco-workbench').waitFor({ timeout: timeoutMs });
    // The explorer shows the folder once the workbench has restored its layout.
    await this.page.locator('.explorer-folders-view, .explorer-viewlet').first().waitFor({ timeout: timeoutMs });
  }

  /** Closes whatever floats over the editor (quick input, hover, suggest, action list). */
  async escape(times = 2) {
    for (let i = 0; i < times; i++) {
      await this.page.keyboard.press('Escape');
    }
  }

  /**
   * Opens a quick input (`open` presses its key or clicks what shows it) and types
   * `prefix + text`. On a busy 2-core machine the input can stop taking text for half a minute
   * (CI saw a fill hang after the Markdown preview opened), so a try that does not get its
   * text in within 10 s is closed and the input opened again, three tries in all.
   */
  async quickInput(open, prefix, text, tries = 3) {
    const input = this.page.locator('.quick-input-widget .quick-input-box input');
    for (let attempt = 1; ; attempt++) {
      try {
        await open();
        await input.waitFor({ state: 'visible', timeout: 15_000 });
        await input.fill(prefix + text, { timeout: 10_000 });
        return input;
      } catch (error) {
        if (attempt >= tries) {
          throw new Error(`the quick input for ${JSON.stringify(prefix + text)} did not take the text in ${tries} tries: ${error.message ?? error}`, { cause: error });
        }
        await this.escape(1);
      }
    }
  }

  /** Quick Open (Ctrl+P) a workspace file by name and wait until its editor is active. */
  async openFile(name) {
    await this.quickInput(() => this.page.keyboard.press('Control+P'), '', name);
    const row = this.page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first();
    await row.click({ timeout: 15_000 });
    await waitFor(`the editor of ${name}`, async () => (await this.activeTabName()) === name, 15_000);
    await this.page.locator('.editor-group-container.active .monaco-editor .view-lines').first().waitFor();
  }

  /** The file name of the active editor. */
  async activeTabName() {
    const tab = this.page.locator('.editor-group-container.active .tab.active').first();
    return (await tab.getAttribute('data-resource-name', { timeout: 2_000 })) ?? '';
  }

  /** Go to Line (Ctrl+G); line and column count from 1, as VS Code shows them. */
  async gotoLine(line, column = 1) {
    await this.quickInput(() => this.page.keyboard.press('Control+G'), ':', `${line}:${column}`);
    await this.page.keyboard.press('Enter');
    await waitFor(`the cursor at ${line}:${column}`, async () => {
      const pos = await this.cursorPosition();
      return pos && pos.line === line && pos.column === column;
    }, 10_000);
  }

  /** The cursor position from the status bar ("Ln 12, Col 3"). */
  async cursorPosition() {
    const item = this.page.locator('#status\\.editor\\.selection');
    const text = screenText(await item.textContent({ timeout: 2_000 }));
    const match = /Ln (\d+), Col (\d+)/.exec(text);
    return match ? { line: Number(match[1]), column: Number(match[2]) } : undefined;
  }

  /** Runs a command from the command palette by its title. */
  async command(title) {
    await this.quickInput(() => this.page.keyboard.press('F1'), '>', title);
    const row = this.page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
    await row.click({ timeout: 15_000 });
  }

  /** The ghost text VS Code shows in the active editor ('' when none), lines joined by \n. */
  async ghostText() {
    const editor = this.page.locator('.editor-group-container.active .monaco-editor').first();
    const text = await editor.evaluate((root) => {
      // Ghost text is drawn as token spans (class ghost-text-decoration) in the cursor's line
      // and, for more lines, in a view zone (class ghost-text); group the spans by line.
      const spans = [...root.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text')].filter(
        (el) => !el.parentElement?.closest('.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text'),
      );
      const lines = new Map();
      for (const el of spans) {
        const rows = el.classList.contains('ghost-text') ? [...el.querySelectorAll('.view-line')] : [];
        if (rows.length > 0) {
          rows.forEach((row) => lines.set(row, row.textContent ?? ''));
          continue;
        }
        const line = el.closest('.view-line') ?? el;
        lines.set(line, (lines.get(line) ?? '') + (el.textContent ?? ''));
      }
      return [...lines.values()].join('\n');
    });
    return screenText(text);
  }

  /** The status bar item of the extension (id `<extension id>.<item id>`). */
  statusItem() {
    return this.page.locator('.statusbar-item[id$="smalltalk.status"]').first();
  }

  /** Text and aria label of the extension's status bar item. */
  async status() {
    const item = this.statusItem();
    const text = screenText(await item.textContent({ timeout: 2_000 })).trim();
    const label = screenText((await item.getAttribute('aria-label', { timeout: 2_000 })) ?? '');
    return { text, label };
  }

  /** The visible text of the hover widget, or '' when none shows. */
  async hoverText() {
    const hover = this.page.locator('.monaco-hover:not(.hidden)').first();
    if (!(await hover.isVisible())) {
      return '';
    }
    return screenText(await hover.innerText());
  }

  /**
   * Shows the hover at the cursor (Ctrl+K Ctrl+I) until its text passes `accept`, asking again
   * every `everyMs` as a user would when a hover closed or came up empty (a keyboard hover is
   * asked once, and a busy moment can lose it). The error says what was on screen last.
   */
  async showHover(what, accept, timeoutMs = 60_000, everyMs = 6_000) {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    while (Date.now() < deadline) {
      await this.page.keyboard.press('Control+K');
      await this.page.keyboard.press('Control+I');
      const asked = Date.now();
      while (Date.now() - asked < everyMs && Date.now() < deadline) {
        seen = await this.hoverText();
        if (accept(seen)) {
          return seen;
        }
        await sleep(250);
      }
      await this.page.keyboard.press('Escape');
    }
    const last = seen ? JSON.stringify(seen.slice(0, 300)) : 'no hover';
    throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}; last seen: ${last}`);
  }

  /** Rows of the code action list (the light bulb's menu), by label. */
  async actionListLabels() {
    const rows = this.page.locator('.action-widget .monaco-list-row');
    const labels = await rows.allInnerTexts();
    return labels.map((l) => screenText(l).trim()).filter((l) => l !== '');
  }

  /** Tab titles of all editor groups ("SRLicence.class.st", "Preview explanation.md"). */
  async tabNames() {
    const tabs = this.page.locator('.tab');
    const names = [];
    for (let i = 0; i < (await tabs.count()); i++) {
      names.push(screenText(await tabs.nth(i).innerText()).replace(/\s+/g, ' ').trim());
    }
    return names;
  }

  /** The text of the active Markdown preview (a webview: two nested iframes). */
  async markdownPreviewText() {
    const frames = this.page.frames();
    for (const frame of frames) {
      if (!/index\.html|fake\.html|webview/i.test(frame.url())) {
        continue;
      }
      try {
        const body = frame.locator('.markdown-body, body.vscode-body');
        if ((await body.count()) > 0) {
          const text = screenText(await body.first().innerText({ timeout: 1_000 }));
          if (text.trim() !== '') {
            return text;
          }
        }
      } catch {
        // a frame that went away while we looked
      }
    }
    return '';
  }

  async screenshot(file, options = {}) {
    await this.page.screenshot({ path: file, ...options });
  }
}
