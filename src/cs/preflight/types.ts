import type { PreflightFacts } from './facts.js';

export type Operation = 'enable' | 'failover' | 'commit' | 'reprotect' | 'failback' | 'cancel' | 'disable';

export const OPERATIONS: readonly Operation[] = ['enable', 'failover', 'commit', 'reprotect', 'failback', 'cancel', 'disable'];

export type Lang = 'en' | 'ja';

export const LANGS: readonly Lang[] = ['en', 'ja'];

/** 'error' blocks the operation; 'warning' is reported and the operation goes ahead. */
export type Severity = 'error' | 'warning';

/**
 * A message parameter whose wording depends on the language (an item state, say). `value` is the
 * stable form that goes into a result's details, `label` what the message shows.
 */
export interface Term {
  readonly value: string;
  readonly label: Readonly<Record<Lang, string>>;
}

export type ParamValue = string | number | Term;

export interface CheckOutcome {
  passed: boolean;
  /** Values for the `{placeholders}` of the check's message and remedy, beyond the common ones. */
  params?: Record<string, ParamValue>;
}

export interface Check {
  /** Stable id; also the key of the check's texts in the message catalogue. */
  id: string;
  /** The source's error code, when it has one; kept verbatim. */
  code?: number;
  /** The operations this check runs before. */
  operations: readonly Operation[];
  severity: Severity;
  evaluate(facts: PreflightFacts): CheckOutcome | Promise<CheckOutcome>;
}

export interface CheckResult {
  id: string;
  code?: number;
  severity: Severity;
  passed: boolean;
  /** For a failed check what is wrong; for a passed one what was checked. */
  message: string;
  /** What to do about it; empty for a passed check. */
  remedy: string;
  details?: Record<string, unknown>;
}

export interface PreflightReport {
  operation: Operation;
  itemId: string;
  /** No check of severity 'error' failed. */
  ok: boolean;
  /** Every check that ran, passed or not, in catalogue order. */
  results: CheckResult[];
  lang: Lang;
}
