// VS Code settings (`smalltalk.*`) -> the server's configuration layout, sent as
// initializationOptions and as the `settings` of workspace/didChangeConfiguration.
// Plain module: no `vscode` import, so it is unit tested under node.

export interface ServerConfig {
  models?: { code_generation?: string; reasoning?: string; embeddings?: string };
  cpu_settings?: { threads?: number; batch_size?: number; context_length?: number };
  completion?: { max_generate_ms?: number };
  adapters?: { active?: string[] };
  /** VS Code's Workspace Trust: may the workspace's own model and adapter files load. */
  trust?: { workspace: boolean };
}

/** The config with the workspace's trust state (the server loads no workspace-supplied
 * models or adapters unless it is told the workspace is trusted). */
export function withTrust(config: ServerConfig, trusted: boolean): ServerConfig {
  return { ...config, trust: { workspace: trusted } };
}

/** Reads one setting below `smalltalk.`, e.g. `get('models.coder')`. */
export type SettingGetter = (key: string) => unknown;

export interface MappedSettings {
  config: ServerConfig;
  /** One line per setting that was set but had the wrong type; the setting is left out. */
  problems: string[];
}

/** Setting key below `smalltalk.` -> [section, key] in the server's layout. */
export const STRING_SETTINGS: ReadonlyArray<[string, 'models', 'code_generation' | 'reasoning' | 'embeddings']> = [
  ['models.coder', 'models', 'code_generation'],
  ['models.reasoner', 'models', 'reasoning'],
  ['models.embeddings', 'models', 'embeddings'],
];

export const INTEGER_SETTINGS: ReadonlyArray<
  ['cpu.threads' | 'cpu.batchSize' | 'cpu.contextLength' | 'completion.maxGenerateMs', 'cpu_settings' | 'completion', string]
> = [
  ['cpu.threads', 'cpu_settings', 'threads'],
  ['cpu.batchSize', 'cpu_settings', 'batch_size'],
  ['cpu.contextLength', 'cpu_settings', 'context_length'],
  ['completion.maxGenerateMs', 'completion', 'max_generate_ms'],
];

function isUnset(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && value.trim() === '');
}

/**
 * Maps the settings to the server's layout. Unset values (undefined, null, empty string) are
 * left out, and so are sections that end up empty: the server's defaults then apply.
 */
export function toServerConfig(get: SettingGetter): MappedSettings {
  const config: Record<string, Record<string, unknown>> = {};
  const problems: string[] = [];
  const put = (section: string, key: string, value: unknown) => {
    (config[section] ??= {})[key] = value;
  };

  for (const [setting, section, key] of STRING_SETTINGS) {
    const value = get(setting);
    if (isUnset(value)) {
      continue;
    }
    if (typeof value !== 'string') {
      problems.push(`smalltalk.${setting}: expected a string, got ${JSON.stringify(value)}`);
      continue;
    }
    put(section, key, value.trim());
  }

  for (const [setting, section, key] of INTEGER_SETTINGS) {
    const value = get(setting);
    if (isUnset(value)) {
      continue;
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      problems.push(`smalltalk.${setting}: expected a positive integer, got ${JSON.stringify(value)}`);
      continue;
    }
    put(section, key, value);
  }

  const active = get('adapters.active');
  if (!isUnset(active)) {
    if (Array.isArray(active) && active.every((name) => typeof name === 'string')) {
      // An explicit empty list is kept: it means "no adapter active".
      put('adapters', 'active', active.map((name: string) => name.trim()).filter((name) => name !== ''));
    } else {
      problems.push(`smalltalk.adapters.active: expected a list of adapter names, got ${JSON.stringify(active)}`);
    }
  }

  return { config: config as ServerConfig, problems };
}

/** The params of workspace/didChangeConfiguration: `{settings: <server layout>}`. */
export function didChangeConfigurationParams(get: SettingGetter): { settings: ServerConfig } {
  return { settings: toServerConfig(get).config };
}

/** Settings whose change needs a server restart rather than a configuration notification. */
export const RESTART_SETTINGS: readonly string[] = ['smalltalk.server.command', 'smalltalk.server.python'];
