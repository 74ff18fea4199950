import type { Lang } from './types.js';

/**
 * The language for an HTTP `Accept-Language` header (or a `--lang` value): the supported language
 * with the highest quality, English when none is acceptable. `ja`, `ja-JP,ja;q=0.9` → 'ja'.
 */
export function parseAcceptLanguage(header: string | undefined): Lang {
  if (!header) return 'en';
  const ranges = header
    .split(',')
    .map((part, index) => {
      const [tag = '', ...attrs] = part.trim().split(';');
      const q = attrs.map((a) => /^\s*q\s*=\s*([\d.]+)\s*$/i.exec(a)).find((m) => m !== null);
      return { primary: tag.trim().toLowerCase().split('-')[0], q: q ? Number(q[1]) : 1, index };
    })
    .filter((r) => r.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index);
  for (const r of ranges) {
    if (r.primary === 'ja' || r.primary === 'en') return r.primary;
  }
  return 'en';
}
