import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Static, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '../replication/errors.js';

/**
 * Reads a component's configuration file (YAML or JSON), fills defaults from the schema,
 * validates it and freezes it. Every problem is reported at once, each with its path.
 */
export async function loadConfigFile<S extends TSchema>(path: string, schema: S): Promise<Static<S>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError('CONFIG_READ', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError('CONFIG_SYNTAX', `config file ${path} does not parse: ${(err as Error).message}`);
  }
  return validateConfig(raw ?? {}, schema, path);
}

export function validateConfig<S extends TSchema>(raw: unknown, schema: S, source: string): Static<S> {
  const value = Value.Default(schema, Value.Clone(raw));
  const problems = [...Value.Errors(schema, value)].map((e) => `  ${e.path || '/'}: ${e.message}${e.value === undefined ? '' : ` (got ${JSON.stringify(e.value)})`}`);
  if (problems.length > 0) {
    throw new ConfigError('CONFIG_INVALID', `config ${source} is invalid:\n${[...new Set(problems)].join('\n')}`);
  }
  return deepFreeze(value as Static<S>);
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const inner of Object.values(v)) deepFreeze(inner);
    Object.freeze(v);
  }
  return v;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** "64MiB", "1g", "4096" → bytes. */
export function parseBytes(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new ConfigError('CONFIG_INVALID', `${JSON.stringify(value)} is not a size (e.g. 512MiB, 4g, 1048576)`);
  return Math.round(Number(m[1]) * unit);
}
