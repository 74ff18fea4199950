import { csError } from '../errors.js';

/**
 * Replication policies come in pairs: creating a forward policy (A→B) creates its failback policy
 * (B→A) with the same settings or the overrides given. Unlike the source product, both stay
 * editable, each on its own.
 */

export interface PolicySettings {
  /** Above this replication lag the item's health turns to warning and pre-flight reports it. */
  rpoThresholdSeconds: number;
  /** How far back recovery points are kept. */
  retentionHours: number;
  /** Period of application-consistent bookmarks; 0 turns them off. */
  appConsistentMinutes: number;
  /** Period of crash-consistent bookmarks. */
  crashConsistentMinutes: number;
  /** Page-blob replicas (Azure) also keep each recovery point as a blob snapshot: a restore is a server-side copy. */
  blobSnapshots: boolean;
}

/** The settings that are whole numbers within limits. */
export type NumericPolicySetting = Exclude<keyof PolicySettings, 'blobSnapshots'>;

interface Limit {
  readonly min: number;
  readonly max: number;
  readonly default: number;
}

export const POLICY_LIMITS: Readonly<Record<NumericPolicySetting, Limit>> = Object.freeze({
  rpoThresholdSeconds: { min: 60, max: 86_400, default: 900 },
  retentionHours: { min: 1, max: 720, default: 24 },
  appConsistentMinutes: { min: 0, max: 720, default: 60 },
  crashConsistentMinutes: { min: 1, max: 60, default: 5 },
});

const FIELDS = Object.keys(POLICY_LIMITS) as NumericPolicySetting[];

/** Leaves room for the failback suffix inside the 64 characters a name may have. */
export const POLICY_NAME_MAX = 55;
const FAILBACK_SUFFIX = '-failback';

export interface PolicyProblem {
  field: keyof PolicySettings;
  message: string;
}

/** Every problem at once: ranges, whole numbers, and that the periods fit the retention window. */
export function policyProblems(s: PolicySettings): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const field of FIELDS) {
    const { min, max } = POLICY_LIMITS[field];
    const v = s[field];
    if (!Number.isInteger(v) || v < min || v > max) problems.push({ field, message: `${field} must be a whole number from ${min} to ${max} (got ${v})` });
  }
  if (problems.length > 0) return problems;
  const windowMinutes = s.retentionHours * 60;
  // A bookmark period longer than the window would leave no point of that kind to recover to.
  if (s.appConsistentMinutes > windowMinutes)
    problems.push({ field: 'appConsistentMinutes', message: `appConsistentMinutes (${s.appConsistentMinutes}) must not exceed the retention window (${windowMinutes} minutes)` });
  if (s.crashConsistentMinutes > windowMinutes)
    problems.push({ field: 'crashConsistentMinutes', message: `crashConsistentMinutes (${s.crashConsistentMinutes}) must not exceed the retention window (${windowMinutes} minutes)` });
  return problems;
}

/**
 * Throws POLICY_INVALID (400) naming the first field at fault and listing every problem;
 * `prefix` places the fields inside a request body (e.g. "failback.").
 */
export function validPolicy(s: PolicySettings, prefix = ''): PolicySettings {
  const problems = policyProblems(s);
  const first = problems[0];
  if (first !== undefined) throw csError('POLICY_INVALID', { message: problems.map((p) => `${prefix}${p.message}`).join('; ') }).at(`${prefix}${first.field}`);
  return s;
}

export function withDefaults(partial: Partial<PolicySettings>): PolicySettings {
  const out = { blobSnapshots: partial.blobSnapshots ?? false } as PolicySettings;
  for (const field of FIELDS) out[field] = partial[field] ?? POLICY_LIMITS[field].default;
  return out;
}

export interface PolicyDraft {
  name: string;
  settings: PolicySettings;
}

/** The two policies created by one request: the failback one inherits what it does not override. */
export function policyPair(name: string, forward: Partial<PolicySettings>, failbackOverrides: Partial<PolicySettings> = {}): { forward: PolicyDraft; failback: PolicyDraft } {
  if (name.length > POLICY_NAME_MAX) throw csError('POLICY_INVALID', { message: `name must have at most ${POLICY_NAME_MAX} characters` }).at('name');
  const f = validPolicy(withDefaults(forward));
  const b = validPolicy({ ...f, ...definedOnly(failbackOverrides) }, 'failback.');
  return { forward: { name, settings: f }, failback: { name: `${name}${FAILBACK_SUFFIX}`, settings: b } };
}

/** An edit: the merged settings must validate as a whole. */
export function patchPolicy(current: PolicySettings, patch: Partial<PolicySettings>): PolicySettings {
  return validPolicy({ ...current, ...definedOnly(patch) });
}

function definedOnly(p: Partial<PolicySettings>): Partial<PolicySettings> {
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as Partial<PolicySettings>;
}
