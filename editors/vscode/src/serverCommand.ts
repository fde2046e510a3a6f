// How the extension finds the command that starts `smalltalk-lsp serve`.
// Plain module: no `vscode` import, so it is unit tested under node.

import * as path from 'path';

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where the command came from, shown in the output channel. */
  source: 'setting:command' | 'setting:python' | 'workspace-venv' | 'checkout-venv' | 'path';
}

export interface ResolveInput {
  /** `smalltalk.server.command`: a full command line, program first. */
  command?: readonly string[] | null;
  /** `smalltalk.server.python`: an interpreter that has the `server` package. */
  python?: string | null;
  /** File-system paths of the open workspace folders, first one first. */
  workspaceFolders: readonly string[];
  /** The extension's own folder (`context.extensionPath`). */
  extensionPath: string;
  /** The environment's PATH and HOME (process.env in the extension). */
  env: { PATH?: string; HOME?: string; USERPROFILE?: string };
  platform: NodeJS.Platform;
  /** Whether a file exists and is executable (fs.accessSync X_OK in the extension). */
  isExecutable: (file: string) => boolean;
  /**
   * Whether the workspace is trusted (vscode.workspace.isTrusted). A workspace's own `.venv`
   * is a program the workspace supplies: it runs only in a trusted workspace. Default false.
   */
  trusted?: boolean;
}

export const SERVE_ARGS: readonly string[] = ['serve'];
export const SERVER_EXECUTABLE = 'smalltalk-lsp';

/** `.venv/bin/smalltalk-lsp` (or `.venv\Scripts\smalltalk-lsp.exe` on Windows) under `root`. */
export function venvExecutable(root: string, platform: NodeJS.Platform): string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  return platform === 'win32'
    ? p.join(root, '.venv', 'Scripts', `${SERVER_EXECUTABLE}.exe`)
    : p.join(root, '.venv', 'bin', SERVER_EXECUTABLE);
}

/** Expands `${workspaceFolder}`, `${userHome}` and a leading `~` in one setting value. */
export function expandVariables(value: string, input: Pick<ResolveInput, 'workspaceFolders' | 'env'>): string {
  const home = input.env.HOME ?? input.env.USERPROFILE ?? '';
  const folder = input.workspaceFolders[0] ?? '';
  let out = value.replace(/\$\{workspaceFolder\}/g, folder).replace(/\$\{userHome\}/g, home);
  if (home && (out === '~' || out.startsWith('~/'))) {
    out = home + out.slice(1);
  }
  return out;
}

/** First directory on PATH holding an executable `name`, or undefined. */
export function findOnPath(name: string, input: Pick<ResolveInput, 'env' | 'platform' | 'isExecutable'>): string | undefined {
  const p = input.platform === 'win32' ? path.win32 : path.posix;
  const sep = input.platform === 'win32' ? ';' : ':';
  const names = input.platform === 'win32' ? [`${name}.exe`, `${name}.cmd`, name] : [name];
  for (const dir of (input.env.PATH ?? '').split(sep)) {
    if (!dir) {
      continue;
    }
    for (const n of names) {
      const candidate = p.join(dir, n);
      if (input.isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

/** The repository root when the extension runs from `<checkout>/editors/vscode`, else undefined. */
export function checkoutRoot(extensionPath: string, platform: NodeJS.Platform): string | undefined {
  const p = platform === 'win32' ? path.win32 : path.posix;
  const ext = p.resolve(extensionPath);
  if (p.basename(ext) === 'vscode' && p.basename(p.dirname(ext)) === 'editors') {
    return p.dirname(p.dirname(ext));
  }
  return undefined;
}

/**
 * Resolution order:
 * 1. `smalltalk.server.command` (non-empty array), used as given after variable expansion;
 * 2. `smalltalk.server.python` -> `python -m server serve`;
 * 3. `.venv/bin/smalltalk-lsp` in a workspace folder, only if the workspace is trusted;
 * 4. `.venv/bin/smalltalk-lsp` of the checkout the extension runs from (`<checkout>/editors/vscode`
 *    -> `<checkout>/.venv`), not for an installed extension;
 * 5. `smalltalk-lsp` on PATH (also the fallback when nothing is found; spawning then fails with
 *    a clear message).
 */
export function resolveServerCommand(input: ResolveInput): ServerCommand {
  const configured = (input.command ?? []).filter((part) => typeof part === 'string');
  if (configured.length > 0 && configured[0].trim() !== '') {
    const [command, ...args] = configured.map((part) => expandVariables(part, input));
    return { command, args, source: 'setting:command' };
  }
  if (typeof input.python === 'string' && input.python.trim() !== '') {
    return {
      command: expandVariables(input.python.trim(), input),
      args: ['-m', 'server', ...SERVE_ARGS],
      source: 'setting:python',
    };
  }
  for (const folder of input.trusted === true ? input.workspaceFolders : []) {
    const candidate = venvExecutable(folder, input.platform);
    if (input.isExecutable(candidate)) {
      return { command: candidate, args: [...SERVE_ARGS], source: 'workspace-venv' };
    }
  }
  const checkout = checkoutRoot(input.extensionPath, input.platform);
  const fromCheckout = checkout !== undefined ? venvExecutable(checkout, input.platform) : undefined;
  if (fromCheckout !== undefined && input.isExecutable(fromCheckout)) {
    return { command: fromCheckout, args: [...SERVE_ARGS], source: 'checkout-venv' };
  }
  const onPath = findOnPath(SERVER_EXECUTABLE, input);
  return { command: onPath ?? SERVER_EXECUTABLE, args: [...SERVE_ARGS], source: 'path' };
}

/** One line for the output channel: `smalltalk-lsp serve (from workspace-venv)`. */
export function describeServerCommand(cmd: ServerCommand): string {
  const quote = (s: string) => (/[\s"']/.test(s) ? JSON.stringify(s) : s);
  return `${[cmd.command, ...cmd.args].map(quote).join(' ')} (from ${cmd.source})`;
}
