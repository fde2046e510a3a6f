// What the status bar item shows. Plain module: the extension feeds it the server's
// `smalltalk/status` notifications, `$/progress` values and the client's state, and
// renders the result; no `vscode` import, so it is unit tested under node.

export type ModelState = 'loading' | 'ready' | 'failed' | 'off';
export type ServerState = 'starting' | 'running' | 'restarting' | 'stopped';

export interface StatusState {
  readonly server: ServerState;
  /** Model role (coder, reasoner, ...) -> state, as the server last reported it. */
  readonly models: Readonly<Record<string, ModelState>>;
  /** Model role -> the model it is configured to run (an embedded name or a path). */
  readonly names: Readonly<Record<string, string>>;
  /** What the server is indexing, or null when idle. */
  readonly indexing: string | null;
  readonly adapters: readonly string[];
  /** Running `$/progress` tasks about models or indexing, by token. */
  readonly progress: Readonly<Record<string, ProgressTask>>;
  /** The inline completion in flight and the last one answered (the server's `completion`). */
  readonly completion: CompletionActivity;
}

export type CompletionState = 'idle' | 'waiting-for-model' | 'queued' | 'thinking' | 'writing';

export interface CompletionActivity {
  readonly state: CompletionState;
  /** Prompt tokens evaluated so far and in all, while thinking (when the engine says). */
  readonly done?: number;
  readonly total?: number;
  /** One line about the last answer: time and tokens reused. */
  readonly last?: string;
}

export interface ProgressTask {
  readonly title: string;
  /** Title plus the last message and percentage. */
  readonly text: string;
}

export interface StatusNotification {
  models?: Record<string, unknown>;
  names?: Record<string, unknown>;
  indexing?: unknown;
  adapters?: unknown;
  completion?: unknown;
}

export interface ProgressValue {
  kind: 'begin' | 'report' | 'end';
  title?: string;
  message?: string;
  percentage?: number;
}

export interface RenderedStatus {
  text: string;
  tooltip: string;
  /** The tooltip's state lines on one line, for screen readers (and the end-to-end tests). */
  label: string;
  severity: 'normal' | 'warning' | 'error';
}

const MODEL_STATES: readonly string[] = ['loading', 'ready', 'failed', 'off'];
const COMPLETION_STATES: readonly string[] = ['idle', 'waiting-for-model', 'queued', 'thinking', 'writing'];
const IDLE: CompletionActivity = { state: 'idle' };

export function initialStatus(): StatusState {
  return { server: 'starting', models: {}, names: {}, indexing: null, adapters: [], progress: {}, completion: IDLE };
}

/** The server's `completion` field: {state, done, total, last: {ms, prompt_tokens, ...}}. */
export function parseCompletion(value: unknown): CompletionActivity {
  if (!value || typeof value !== 'object') {
    return IDLE;
  }
  const v = value as Record<string, unknown>;
  const state = typeof v.state === 'string' && COMPLETION_STATES.includes(v.state) ? (v.state as CompletionState) : 'idle';
  const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  let last: string | undefined;
  if (v.last && typeof v.last === 'object') {
    const l = v.last as Record<string, unknown>;
    const ms = num(l.ms);
    const prompt = num(l.prompt_tokens);
    const reused = num(l.reused_tokens);
    const parts = [ms !== undefined ? `${(ms / 1000).toFixed(1)} s` : undefined,
      prompt !== undefined ? `${prompt} prompt tokens (${reused ?? 0} reused)` : undefined,
      l.empty === true ? 'no suggestion' : undefined,
      typeof l.why === 'string' && l.why ? String(l.why) : undefined].filter((p) => p !== undefined);
    last = parts.length > 0 ? parts.join(', ') : undefined;
  }
  return { state, done: num(v.done), total: num(v.total), last };
}

/** What the status bar says about a suggestion in flight; undefined when there is none. */
export function completionText(activity: CompletionActivity): string | undefined {
  switch (activity.state) {
    case 'waiting-for-model':
      return 'suggestion waits for the coder model to load';
    case 'queued':
      return 'thinking (queued)';
    case 'thinking':
      return activity.total ? `thinking ${activity.done ?? 0}/${activity.total} tokens` : 'thinking';
    case 'writing':
      return 'writing a suggestion';
    default:
      return undefined;
  }
}

export function withServerState(state: StatusState, server: ServerState): StatusState {
  if (server === 'running') {
    return { ...state, server };
  }
  // What a stopped or restarting server reported no longer holds; a new one reports afresh.
  return { ...state, server, models: {}, names: {}, indexing: null, progress: {}, completion: IDLE };
}

/** Applies a `smalltalk/status` notification; fields it leaves out keep their value. */
export function applyStatusNotification(state: StatusState, params: StatusNotification | null | undefined): StatusState {
  if (!params || typeof params !== 'object') {
    return state;
  }
  let next: StatusState = state;
  if (params.models && typeof params.models === 'object') {
    const models: Record<string, ModelState> = { ...state.models };
    for (const [role, value] of Object.entries(params.models)) {
      if (typeof value === 'string' && MODEL_STATES.includes(value)) {
        models[role] = value as ModelState;
      }
    }
    next = { ...next, models };
  }
  if (params.names && typeof params.names === 'object') {
    const names: Record<string, string> = { ...state.names };
    for (const [role, value] of Object.entries(params.names)) {
      if (typeof value === 'string') {
        names[role] = value;
      }
    }
    next = { ...next, names };
  }
  if ('indexing' in params) {
    next = { ...next, indexing: typeof params.indexing === 'string' && params.indexing !== '' ? params.indexing : null };
  }
  if (Array.isArray(params.adapters)) {
    next = { ...next, adapters: params.adapters.filter((a): a is string => typeof a === 'string') };
  }
  if ('completion' in params) {
    next = { ...next, completion: parseCompletion(params.completion) };
  }
  return next;
}

/** Whether a `$/progress` title is about models or indexing (the only ones the item shows). */
export function isTrackedProgressTitle(title: string | undefined): boolean {
  return typeof title === 'string' && /model|index/i.test(title);
}

/**
 * Applies one `$/progress` value. `begin` with a tracked title starts a task, `report`
 * updates a running one, `end` removes it. Untracked tokens are ignored.
 */
export function applyProgress(state: StatusState, token: string | number, value: ProgressValue): StatusState {
  const key = String(token);
  const running = state.progress[key];
  if (value.kind === 'begin') {
    if (!isTrackedProgressTitle(value.title)) {
      return state;
    }
    const title = value.title ?? '';
    return { ...state, progress: { ...state.progress, [key]: { title, text: progressText(title, value) } } };
  }
  if (running === undefined) {
    return state;
  }
  if (value.kind === 'report') {
    const task = { title: running.title, text: progressText(running.title, value) };
    return { ...state, progress: { ...state.progress, [key]: task } };
  }
  const progress = { ...state.progress };
  delete progress[key];
  return { ...state, progress };
}

function progressText(title: string, value: ProgressValue): string {
  const detail = [value.message, typeof value.percentage === 'number' ? `${Math.round(value.percentage)}%` : undefined]
    .filter((p) => p !== undefined && p !== '')
    .join(' ');
  return detail ? `${title}: ${detail}` : title;
}

function rolesIn(state: StatusState, wanted: ModelState): string[] {
  return Object.entries(state.models)
    .filter(([, s]) => s === wanted)
    .map(([role]) => role)
    .sort();
}

export function renderStatus(state: StatusState): RenderedStatus {
  const lines: string[] = [`Server: ${state.server}`];
  for (const role of Object.keys(state.models).sort()) {
    const name = state.names[role];
    lines.push(`${role}: ${state.models[role]}${name && name !== 'off' ? ` (${name})` : ''}`);
  }
  if (state.indexing) {
    lines.push(`Indexing: ${state.indexing}`);
  }
  for (const task of Object.values(state.progress)) {
    lines.push(task.text);
  }
  lines.push(`Adapters: ${state.adapters.length > 0 ? state.adapters.join(', ') : 'none'}`);
  const thinking = completionText(state.completion);
  if (thinking) {
    lines.push(`Suggestion: ${thinking}`);
  }
  if (state.completion.last) {
    lines.push(`Last suggestion: ${state.completion.last}`);
  }
  const label = `Smalltalk LSP: ${lines.join('; ')}`;
  lines.push('Click to choose a LoRA adapter.');
  const tooltip = lines.join('\n');
  const adapters = state.adapters.length > 0 ? ` [${state.adapters.join(', ')}]` : '';

  if (state.server === 'stopped') {
    return { text: '$(error) Smalltalk: server stopped', tooltip, label, severity: 'error' };
  }
  if (state.server === 'starting' || state.server === 'restarting') {
    return { text: `$(sync~spin) Smalltalk: ${state.server}`, tooltip, label, severity: 'normal' };
  }
  const failed = rolesIn(state, 'failed');
  if (failed.length > 0) {
    return { text: `$(error) Smalltalk: ${failed.join(', ')} failed${adapters}`, tooltip, label, severity: 'error' };
  }
  if (thinking) {
    return { text: `$(loading~spin) Smalltalk: ${thinking}${adapters}`, tooltip, label, severity: 'normal' };
  }
  const loading = rolesIn(state, 'loading');
  const modelProgress = Object.values(state.progress).filter((t) => /model/i.test(t.title));
  if (loading.length > 0 || modelProgress.length > 0) {
    const what = loading.length > 0 ? loading.join(', ') : 'models';
    return { text: `$(sync~spin) Smalltalk: loading ${what}${adapters}`, tooltip, label, severity: 'normal' };
  }
  const indexProgress = Object.values(state.progress).filter((t) => /index/i.test(t.title));
  if (state.indexing || indexProgress.length > 0) {
    return { text: `$(sync~spin) Smalltalk: indexing${adapters}`, tooltip, label, severity: 'normal' };
  }
  return { text: `$(check) Smalltalk${adapters}`, tooltip, label, severity: 'normal' };
}
