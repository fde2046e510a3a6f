// Code-action commands, adapters and shown documents: the plain parts.
// No `vscode` import, so it is unit tested under node.

/** Code action kinds the server offers (`refactor.smalltalk.*`). */
export const CODE_ACTION_KINDS = {
  explain: 'refactor.smalltalk.explain',
  design: 'refactor.smalltalk.design',
  implement: 'refactor.smalltalk.implement',
  tests: 'refactor.smalltalk.tests',
  comment: 'refactor.smalltalk.comment',
} as const;

/** Extension command -> the code action kind it asks for. */
export const COMMAND_KINDS: Readonly<Record<string, string>> = {
  'smalltalk.explain': CODE_ACTION_KINDS.explain,
  'smalltalk.design': CODE_ACTION_KINDS.design,
  'smalltalk.implement': CODE_ACTION_KINDS.implement,
  'smalltalk.writeTests': CODE_ACTION_KINDS.tests,
};

export interface ActionLike {
  kind?: { value: string } | string;
  disabled?: unknown;
  isPreferred?: boolean;
}

function kindValue(action: ActionLike): string | undefined {
  if (typeof action.kind === 'string') {
    return action.kind;
  }
  return action.kind?.value;
}

/** Whether `kind` is `wanted` or below it (`refactor.smalltalk.explain.method` is below `...explain`). */
export function kindMatches(kind: string | undefined, wanted: string): boolean {
  return kind !== undefined && (kind === wanted || kind.startsWith(`${wanted}.`));
}

/**
 * The action to run for a command: the first enabled action of the wanted kind, preferred ones
 * first. Plain commands (no kind) are skipped: the server's actions always carry a kind.
 */
export function chooseAction<T extends ActionLike>(actions: readonly T[] | undefined | null, wanted: string): T | undefined {
  const matching = (actions ?? []).filter((a) => !a.disabled && kindMatches(kindValue(a), wanted));
  return matching.find((a) => a.isPreferred) ?? matching[0];
}

/** Whether a `window/showDocument` target should open as a Markdown preview. */
export function isMarkdownUri(uri: string): boolean {
  const withoutQuery = uri.split(/[?#]/)[0];
  return /\.(md|markdown)$/i.test(withoutQuery);
}

export interface AdapterInfo {
  name: string;
  path?: string;
  base_architecture?: string;
  loaded?: boolean;
  active?: boolean;
  scale?: number;
  error?: string | null;
}

/** Keeps the well-formed entries of a `smalltalk.adapters.list` result. */
export function parseAdapterList(result: unknown): AdapterInfo[] {
  if (!Array.isArray(result)) {
    return [];
  }
  return result.filter(
    (item): item is AdapterInfo => item !== null && typeof item === 'object' && typeof (item as AdapterInfo).name === 'string',
  );
}

export interface AdapterPickItem {
  label: string;
  description: string;
  detail?: string;
  adapter: string;
}

/** Quick-pick rows: active adapters marked, errors shown, broken ones last. */
export function adapterPickItems(adapters: readonly AdapterInfo[]): AdapterPickItem[] {
  const rows = adapters.map((a) => {
    const description = [
      a.active ? 'active' : a.loaded ? 'loaded' : undefined,
      a.base_architecture,
      typeof a.scale === 'number' ? `scale ${a.scale}` : undefined,
    ]
      .filter((p) => p !== undefined && p !== '')
      .join(' · ');
    return {
      label: `${a.active ? '$(check) ' : a.error ? '$(warning) ' : ''}${a.name}`,
      description,
      detail: a.error ? `error: ${a.error}` : a.path,
      adapter: a.name,
    };
  });
  const broken = (row: AdapterPickItem) => (row.label.startsWith('$(warning)') ? 1 : 0);
  return rows.sort((x, y) => broken(x) - broken(y));
}
