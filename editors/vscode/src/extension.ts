// VS Code wiring: starts `smalltalk-lsp serve` through vscode-languageclient and connects
// the status bar item, the commands and the settings to it. The decisions live in the plain
// modules next to this one (serverCommand, settings, status, restart, actions).

import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  CloseAction,
  CodeAction as LspCodeAction,
  CodeActionRequest,
  CodeActionResolveRequest,
  CodeActionTriggerKind,
  Command as LspCommand,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandler,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  NotificationHandler,
  ProgressType,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';
import { adapterPickItems, chooseAction, COMMAND_KINDS, isMarkdownUri, parseAdapterList } from './actions';
import { LogDedup } from './logDedup';
import { RestartPolicy } from './restart';
import { projectRoot } from './root';
import { describeServerCommand, resolveServerCommand, ServerCommand } from './serverCommand';
import { RESTART_SETTINGS, toServerConfig, withTrust } from './settings';
import {
  applyProgress,
  applyStatusNotification,
  initialStatus,
  ProgressValue,
  renderStatus,
  RenderedStatus,
  StatusNotification,
  StatusState,
  withServerState,
} from './status';

const LANGUAGE_ID = 'smalltalk';
const STATUS_NOTIFICATION = 'smalltalk/status';

/** A LanguageClient that also hands every work-done `$/progress` value to a listener. */
class SmalltalkLanguageClient extends LanguageClient {
  progressListener?: (token: string | number, value: ProgressValue) => void;

  override onProgress<P>(type: ProgressType<P>, token: string | number, handler: NotificationHandler<P>): vscode.Disposable {
    return super.onProgress(type, token, (value: P) => {
      const v = value as unknown as ProgressValue;
      if (v && typeof v === 'object' && (v.kind === 'begin' || v.kind === 'report' || v.kind === 'end')) {
        try {
          this.progressListener?.(token, v);
        } catch {
          // The status bar must never break the client's own progress display.
        }
      }
      handler(value);
    });
  }
}

/** What `activate` returns; the end-to-end tests and other extensions may read it. */
export interface SmalltalkApi {
  readonly client: () => LanguageClient | undefined;
  readonly serverCommand: () => ServerCommand | undefined;
  readonly status: () => StatusState;
  readonly renderedStatus: () => RenderedStatus;
}

// How the client writes window/logMessage into the channel (appendLine: MessageType.Log, the
// server's DEBUG records).
const LOG_METHODS = new Set<PropertyKey>(['appendLine', 'debug', 'info', 'warn', 'error']);

/** The channel as the client sees it: every line it logs (server messages included) is also
 * handed to `seen`. */
function observedChannel(channel: vscode.LogOutputChannel, seen: (text: string) => void): vscode.LogOutputChannel {
  return new Proxy(channel, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') {
        return value;
      }
      const method = value as (...args: unknown[]) => unknown;
      if (LOG_METHODS.has(prop)) {
        return (message: unknown, ...args: unknown[]) => {
          if (typeof message === 'string') {
            seen(message);
          }
          return method.call(target, message, ...args);
        };
      }
      return method.bind(target);
    },
  });
}

/** Server stderr into the channel, less the log records that also came as messages. */
function stdioOptions(output: vscode.LogOutputChannel, dedup: LogDedup) {
  return {
    stdout: (input: NodeJS.ReadableStream) => {
      input.setEncoding('utf8');
      input.on('data', (chunk: string) => {
        for (const line of chunk.split(/\r?\n/).filter((l) => l !== '')) {
          output.info(line);
        }
      });
    },
    stderr: (input: NodeJS.ReadableStream) => {
      input.setEncoding('utf8');
      input.on('data', (chunk: string) => dedup.stderr(chunk));
      input.on('end', () => dedup.flush());
    },
  };
}

function smalltalkSetting(key: string): unknown {
  return vscode.workspace.getConfiguration('smalltalk').get(key);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, process.platform === 'win32' ? fs.constants.F_OK : fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

class SmalltalkExtension implements vscode.Disposable {
  private client: SmalltalkLanguageClient | undefined;
  private command: ServerCommand | undefined;
  private state: StatusState = initialStatus();
  private readonly restartPolicy = new RestartPolicy();
  private readonly output: vscode.LogOutputChannel;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('Smalltalk LSP', { log: true });
    this.statusItem = vscode.window.createStatusBarItem('smalltalk.status', vscode.StatusBarAlignment.Right, 100);
    this.statusItem.name = 'Smalltalk LSP';
    this.statusItem.command = 'smalltalk.adapters.pick';
    this.disposables.push(this.output, this.statusItem);
    this.render();
    this.statusItem.show();
  }

  api(): SmalltalkApi {
    return {
      client: () => this.client,
      serverCommand: () => this.command,
      status: () => this.state,
      renderedStatus: () => renderStatus(this.state),
    };
  }

  registerCommands(): void {
    const register = (id: string, fn: (...args: unknown[]) => unknown) =>
      this.disposables.push(vscode.commands.registerCommand(id, fn));
    for (const [id, kind] of Object.entries(COMMAND_KINDS)) {
      register(id, () => this.runCodeAction(kind));
    }
    register('smalltalk.adapters.pick', () => this.pickAdapter());
    register('smalltalk.restartServer', () => this.restart());
    register('smalltalk.showOutput', () => this.output.show(true));
    // The server's code lens ("N senders · M implementors") opens the references at a position.
    register('smalltalk.showReferences', async (uri, position) => {
      const at = position as { line: number; character: number };
      const target = vscode.Uri.parse(String(uri));
      const pos = new vscode.Position(at.line, at.character);
      const locations = await vscode.commands.executeCommand<vscode.Location[]>('vscode.executeReferenceProvider', target, pos);
      await vscode.commands.executeCommand('editor.action.showReferences', target, pos, locations ?? []);
    });
    this.disposables.push(vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)));
    this.disposables.push(vscode.workspace.onDidGrantWorkspaceTrust(() => void this.onTrustGranted()));
  }

  private setState(next: StatusState): void {
    this.state = next;
    this.render();
  }

  private render(): void {
    const r = renderStatus(this.state);
    this.statusItem.text = r.text;
    this.statusItem.tooltip = r.tooltip;
    this.statusItem.accessibilityInformation = { label: r.label };
    this.statusItem.backgroundColor =
      r.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : r.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  private log(line: string): void {
    this.output.info(`[extension] ${line}`);
  }

  private mappedConfig() {
    const { config, problems } = toServerConfig(smalltalkSetting);
    for (const problem of problems) {
      this.log(`ignored setting ${problem}`);
    }
    return withTrust(config, vscode.workspace.isTrusted);
  }

  private errorHandler(): ErrorHandler {
    return {
      error: (_error, _message, count) =>
        count !== undefined && count <= 3 ? { action: ErrorAction.Continue } : { action: ErrorAction.Shutdown },
      closed: async () => {
        const delay = this.restartPolicy.onCrash(Date.now());
        if (delay === undefined) {
          this.setState(withServerState(this.state, 'stopped'));
          void vscode.window
            .showErrorMessage('The Smalltalk language server crashed repeatedly and was not restarted.', 'Restart', 'Show Log')
            .then((choice) => {
              if (choice === 'Restart') {
                void this.restart();
              } else if (choice === 'Show Log') {
                this.output.show(true);
              }
            });
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        this.log(`server exited; restarting in ${delay} ms (crash ${this.restartPolicy.recentCrashes})`);
        this.setState(withServerState(this.state, 'restarting'));
        await new Promise((resolve) => setTimeout(resolve, delay));
        return { action: CloseAction.Restart, handled: true, message: 'Smalltalk language server restarted.' };
      },
    };
  }

  start(): Promise<void> {
    const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
    this.command = resolveServerCommand({
      command: smalltalkSetting('server.command') as string[] | null | undefined,
      python: smalltalkSetting('server.python') as string | null | undefined,
      workspaceFolders: folders,
      extensionPath: this.context.extensionPath,
      env: process.env,
      platform: process.platform,
      isExecutable,
      trusted: vscode.workspace.isTrusted,
    });
    this.log(`server command: ${describeServerCommand(this.command)}`);
    const executable = { command: this.command.command, args: this.command.args, options: { cwd: folders[0] } };
    const serverOptions: ServerOptions = { run: executable, debug: executable };

    // The server logs each record to stderr and as window/logMessage: show it once.
    const dedup = new LogDedup((line) => this.output.error(line));
    // A Tonel package folder opened alone is not the project: index the repository around it.
    const root = folders[0] !== undefined ? projectRoot(folders[0], fs.existsSync) : undefined;
    const clientOptions: LanguageClientOptions = {
      workspaceFolder:
        root !== undefined && root !== folders[0]
          ? { uri: vscode.Uri.file(root), name: path.basename(root), index: 0 }
          : undefined,
      documentSelector: [
        { scheme: 'file', language: LANGUAGE_ID },
        { scheme: 'untitled', language: LANGUAGE_ID },
      ],
      outputChannel: observedChannel(this.output, (text) => dedup.message(text)),
      stdioOptions: stdioOptions(this.output, dedup),
      initializationOptions: () => this.mappedConfig(),
      errorHandler: this.errorHandler(),
      middleware: {
        window: {
          showDocument: async (params, token, next) => {
            if (!params.external && isMarkdownUri(params.uri)) {
              try {
                await vscode.commands.executeCommand('markdown.showPreviewToSide', vscode.Uri.parse(params.uri));
                return { success: true };
              } catch (error) {
                this.log(`Markdown preview failed, opening as text: ${String(error)}`);
              }
            }
            return next(params, token);
          },
        },
        workspace: {
          // Pull-style configuration gets the same layout as initializationOptions.
          configuration: async (params, token, next) => {
            const raw = await next(params, token);
            if (!Array.isArray(raw)) {
              return raw;
            }
            const config = this.mappedConfig() as Record<string, unknown>;
            return params.items.map((item, i) => {
              if (!item.section || item.section === 'smalltalk') {
                return config;
              }
              if (item.section in config || ['models', 'cpu_settings', 'completion', 'adapters'].includes(item.section)) {
                return config[item.section] ?? null;
              }
              return raw[i];
            });
          },
        },
      },
    };

    const client = new SmalltalkLanguageClient('smalltalk-lsp', 'Smalltalk LSP', serverOptions, clientOptions);
    this.client = client;
    client.progressListener = (token, value) => this.setState(applyProgress(this.state, token, value));
    client.onNotification(STATUS_NOTIFICATION, (params: StatusNotification) =>
      this.setState(applyStatusNotification(this.state, params)),
    );
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) {
        this.log(`server running (pid ${client.serverProcess?.pid ?? 'unknown'})`);
        this.setState(withServerState(this.state, 'running'));
      } else if (e.newState === State.Starting) {
        this.setState(withServerState(this.state, 'starting'));
      } else if (e.newState === State.Stopped && this.state.server !== 'restarting') {
        this.setState(withServerState(this.state, 'stopped'));
      }
    });
    this.setState(withServerState(this.state, 'starting'));
    return client.start().catch((error: unknown) => {
      this.setState(withServerState(this.state, 'stopped'));
      this.log(`could not start ${describeServerCommand(this.command!)}: ${String(error)}`);
      void vscode.window
        .showErrorMessage(
          `Could not start the Smalltalk language server (${this.command!.command}). Set "smalltalk.server.command" or "smalltalk.server.python".`,
          'Open Settings',
          'Show Log',
        )
        .then((choice) => {
          if (choice === 'Open Settings') {
            void vscode.commands.executeCommand('workbench.action.openSettings', 'smalltalk.server');
          } else if (choice === 'Show Log') {
            this.output.show(true);
          }
        });
    });
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.dispose(5000);
      } catch (error) {
        this.log(`stopping the server failed: ${String(error)}`);
      }
    }
  }

  async restart(): Promise<void> {
    this.restartPolicy.reset();
    await this.stop();
    await this.start();
  }

  private async onConfigurationChanged(e: vscode.ConfigurationChangeEvent): Promise<void> {
    if (RESTART_SETTINGS.some((s) => e.affectsConfiguration(s))) {
      this.log('server command changed; restarting');
      await this.restart();
      return;
    }
    if (!e.affectsConfiguration('smalltalk') || !this.client?.isRunning()) {
      return;
    }
    await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: this.mappedConfig() });
  }

  /** The user trusted the workspace: the server may now load its models and adapters (told by
   * the settings), or, if the workspace has its own server in `.venv`, that one starts. */
  private async onTrustGranted(): Promise<void> {
    const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
    const next = resolveServerCommand({
      command: smalltalkSetting('server.command') as string[] | null | undefined,
      python: smalltalkSetting('server.python') as string | null | undefined,
      workspaceFolders: folders,
      extensionPath: this.context.extensionPath,
      env: process.env,
      platform: process.platform,
      isExecutable,
      trusted: true,
    });
    if (this.command && next.command !== this.command.command) {
      this.log('workspace trusted; restarting with its own server');
      await this.restart();
    } else if (this.client?.isRunning()) {
      this.log('workspace trusted; telling the server');
      await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: this.mappedConfig() });
    }
  }

  private runningClient(): SmalltalkLanguageClient | undefined {
    if (!this.client?.isRunning()) {
      void vscode.window.showWarningMessage('The Smalltalk language server is not running.', 'Show Log').then((c) => {
        if (c) {
          this.output.show(true);
        }
      });
      return undefined;
    }
    return this.client;
  }

  /** Asks the server for code actions of `kind` at the selection and runs the first one. */
  async runCodeAction(kind: string): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.document.languageId !== LANGUAGE_ID) {
      void vscode.window.showInformationMessage('Open a Smalltalk file and place the cursor in a method.');
      return;
    }
    const client = this.runningClient();
    if (!client) {
      return;
    }
    const label = kind.split('.').pop();
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Smalltalk: ${label}…`, cancellable: true },
      async (_progress, token) => {
        const c2p = client.code2ProtocolConverter;
        const result = await client.sendRequest(
          CodeActionRequest.type,
          {
            textDocument: c2p.asTextDocumentIdentifier(editor.document),
            range: c2p.asRange(editor.selection),
            context: { diagnostics: [], only: [kind], triggerKind: CodeActionTriggerKind.Invoked },
          },
          token,
        );
        const actions = (result ?? []).filter((a): a is LspCodeAction => !LspCommand.is(a));
        let action = chooseAction(actions, kind);
        if (!action) {
          void vscode.window.showInformationMessage(`No "${label}" action here: place the cursor in a method or class.`);
          return;
        }
        if (action.edit === undefined && action.command === undefined) {
          action = await client.sendRequest(CodeActionResolveRequest.type, action, token);
        }
        if (token.isCancellationRequested) {
          return;
        }
        if (action.edit) {
          const edit = await client.protocol2CodeConverter.asWorkspaceEdit(action.edit, token);
          if (!(await vscode.workspace.applyEdit(edit))) {
            void vscode.window.showErrorMessage(`Could not apply "${action.title}".`);
            return;
          }
        }
        if (action.command) {
          await client.sendRequest(
            ExecuteCommandRequest.type,
            { command: action.command.command, arguments: action.command.arguments },
            token,
          );
        }
      },
    );
  }

  /** Lists the server's adapters in a quick pick and activates the chosen one. */
  async pickAdapter(): Promise<void> {
    const client = this.runningClient();
    if (!client) {
      return;
    }
    const result = await client.sendRequest(ExecuteCommandRequest.type, { command: 'smalltalk.adapters.list', arguments: [] });
    const items = adapterPickItems(parseAdapterList(result));
    if (items.length === 0) {
      void vscode.window.showInformationMessage('No LoRA adapters found for this project.');
      return;
    }
    const choice = await vscode.window.showQuickPick(items, {
      title: 'Smalltalk: LoRA adapters',
      placeHolder: 'Activate an adapter',
      matchOnDescription: true,
    });
    if (!choice) {
      return;
    }
    await client.sendRequest(ExecuteCommandRequest.type, { command: 'smalltalk.adapters.activate', arguments: [choice.adapter] });
    this.log(`activated adapter ${choice.adapter}`);
  }

  async dispose(): Promise<void> {
    await this.stop();
    for (const d of this.disposables) {
      d.dispose();
    }
  }
}

let extension: SmalltalkExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<SmalltalkApi> {
  extension = new SmalltalkExtension(context);
  extension.registerCommands();
  context.subscriptions.push({ dispose: () => void extension?.dispose() });
  void extension.start();
  return extension.api();
}

export async function deactivate(): Promise<void> {
  const ext = extension;
  extension = undefined;
  await ext?.dispose();
}
