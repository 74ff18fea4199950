import { BUILTIN_CHECKS } from './checks/index.js';
import type { PreflightFacts } from './facts.js';
import { CHECK_ERROR_ID, MESSAGES, interpolate, type CheckTexts } from './messages.js';
import type { Check, CheckResult, Lang, Operation, ParamValue, PreflightReport } from './types.js';

export interface PreflightOptions {
  lang: Lang;
  /** The checks to choose from; the built-in ones by default. */
  checks?: readonly Check[];
}

export function checksFor(operation: Operation, checks: readonly Check[] = BUILTIN_CHECKS): Check[] {
  return checks.filter((c) => c.operations.includes(operation));
}

function textsOf(id: string): CheckTexts {
  const texts = MESSAGES[id];
  if (!texts) throw new Error(`preflight check ${id} has no entry in the message catalogue`);
  return texts;
}

/** Names every check may use in its texts without returning them itself. */
function commonParams(facts: PreflightFacts): Record<string, ParamValue> {
  return { item: facts.item.name, machine: facts.source.name, ps: facts.processServer.name, mt: facts.masterTarget.name };
}

function details(params: Record<string, ParamValue>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, typeof v === 'object' ? v.value : v]));
}

/**
 * Runs every check that applies to `operation` and reports all of them, so the operator sees every
 * problem at once instead of fixing them one retry at a time.
 */
export async function runPreflight(operation: Operation, facts: PreflightFacts, options: PreflightOptions): Promise<PreflightReport> {
  const { lang } = options;
  const checks = checksFor(operation, options.checks);
  for (const c of checks) textsOf(c.id);
  const common = commonParams(facts);

  const results = await Promise.all(
    checks.map(async (check): Promise<CheckResult> => {
      const base = { id: check.id, ...(check.code === undefined ? {} : { code: check.code }), severity: check.severity };
      try {
        const outcome = await check.evaluate(facts);
        const text = textsOf(check.id)[lang];
        if (outcome.passed) return { ...base, passed: true, message: text.title, remedy: '' };
        const own = outcome.params ?? {};
        const params = { ...common, ...own };
        return {
          ...base,
          passed: false,
          message: interpolate(text.message, params, lang),
          remedy: interpolate(text.remedy, params, lang),
          ...(Object.keys(own).length > 0 ? { details: details(own) } : {}),
        };
      } catch (err) {
        // A check that cannot decide blocks as its severity says, and the others still report.
        const error = err instanceof Error ? err.message : String(err);
        const text = textsOf(CHECK_ERROR_ID)[lang];
        const params = { ...common, check: check.id, error };
        return {
          ...base,
          passed: false,
          message: interpolate(text.message, params, lang),
          remedy: interpolate(text.remedy, params, lang),
          details: { error },
        };
      }
    }),
  );

  return {
    operation,
    itemId: facts.item.id,
    ok: results.every((r) => r.passed || r.severity !== 'error'),
    results,
    lang,
  };
}
